"""Bad input to the Python API and the command line: a clear error or a sane result, never a crash,
a traceback or a silently wrong image. (The app's endpoints: test_app.py, test_robustness.py.)"""

from __future__ import annotations

import io
import json
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

from muse import __main__ as cli
from muse.hub import WeightsError
from muse.images import ImageError, array_to_pil, as_pil, open_image, to_rgb
from muse.load import load_pipeline
from muse.transformer import MaskedTransformer
from muse.vq import VQModel


def png_bytes(image: Image.Image, **kwargs) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG", **kwargs)
    return buf.getvalue()


def bomb_png(width: int, height: int) -> bytes:
    """A valid PNG header that claims width x height pixels (a decompression bomb's calling card)."""
    data = bytearray(png_bytes(Image.new("L", (8, 8))))
    ihdr = 8 + 8  # signature, then the IHDR chunk's length and type
    data[ihdr:ihdr + 8] = struct.pack(">II", width, height)
    crc = zlib.crc32(bytes(data[ihdr - 4:ihdr + 13]))
    data[ihdr + 13:ihdr + 17] = struct.pack(">I", crc)
    return bytes(data)


# ----- images ------------------------------------------------------------------------------------

def test_files_of_every_kind_open_or_fail_clearly(tmp_path):
    (tmp_path / "notes.png").write_text("not an image")
    with pytest.raises(ImageError, match="not a readable image"):
        open_image(tmp_path / "notes.png")
    with pytest.raises(ImageError, match="does not exist"):
        open_image(tmp_path / "missing.png")
    with pytest.raises(ImageError, match="folder"):
        open_image(tmp_path)
    whole = png_bytes(Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)))
    with pytest.raises(ImageError, match="damaged|not a readable"):
        open_image(whole[: len(whole) // 2])
    with pytest.raises(ImageError, match="megapixels"):  # refused from the header: nothing is decoded
        open_image(bomb_png(100_000, 100_000))
    with pytest.raises(ImageError, match="megapixels"):
        open_image(bomb_png(9000, 9000))
    assert open_image(png_bytes(Image.new("RGB", (3000, 20))), max_side=512).size == (512, 3)


def test_animated_palette_and_16_bit_files_are_converted(tmp_path):
    frames = [Image.new("RGB", (16, 16), c) for c in ((250, 0, 0), (0, 0, 250))]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:], duration=50, loop=0)
    first = np.asarray(to_rgb(tmp_path / "anim.gif"))
    assert first[..., 0].mean() > 200 and first[..., 2].mean() < 50  # the first frame, not the last
    palette = Image.new("P", (8, 8), 1)
    palette.putpalette([0, 0, 0, 10, 200, 30] + [0] * 762)
    assert np.asarray(open_image(png_bytes(palette)).convert("RGB"))[0, 0].tolist() == [10, 200, 30]
    deep = open_image(png_bytes(Image.fromarray(np.full((8, 8), 65535, np.uint16))))
    assert np.asarray(to_rgb(deep)).min() == 255  # full-scale 16-bit is white, not clipped garbage


@pytest.mark.parametrize("array, message", [
    (np.full((8, 8, 3), np.nan, np.float32), "NaN or infinite"),
    (np.full((8, 8, 3), np.inf), "NaN or infinite"),
    (np.full((8, 8, 3), 200.0), "divide 0-255 values by 255"),
    (np.zeros((8, 8, 3), np.int32), "dtype int32"),
    (np.zeros((8, 8, 5), np.uint8), "shape"),
    (np.zeros((0, 8, 3), np.uint8), "empty"),
])
def test_bad_arrays_are_clear_errors(array, message):
    with pytest.raises(ImageError, match=message):
        array_to_pil(array)


def test_arrays_and_tensors_of_the_usual_kinds_are_accepted():
    assert np.asarray(array_to_pil(np.ones((4, 4, 3)))).min() == 255
    assert np.asarray(array_to_pil(np.full((4, 4), 65535, np.uint16))).min() == 255
    chw = torch.zeros(3, 5, 7)
    chw[0] = 1.0
    rgb = np.asarray(as_pil(chw))
    assert rgb.shape == (5, 7, 3) and rgb[..., 0].min() == 255 and rgb[..., 1].max() == 0
    with pytest.raises(TypeError, match="PIL image, an array or a file path"):
        as_pil(12)


def test_inpaint_refuses_a_mask_of_another_size(tiny_pipe):
    image = Image.new("RGB", (64, 64), "blue")
    with pytest.raises(ImageError, match="mask is 32x32 pixels but the image is 64x64"):
        tiny_pipe.inpaint(image, Image.new("L", (32, 32), 255), "x", timesteps=2)


def test_inpaint_takes_paths_arrays_and_integer_masks(tiny_pipe, tmp_path):
    Image.new("RGB", (32, 32), "blue").save(tmp_path / "img.png")
    mask = np.zeros((32, 32), np.int64)
    mask[:, :16] = 1
    by_path = tiny_pipe.inpaint(tmp_path / "img.png", mask, "x", timesteps=2, seed=3)[0]
    by_array = tiny_pipe.inpaint(np.asarray(Image.open(tmp_path / "img.png")), mask.astype(bool), "x",
                                 timesteps=2, seed=3)[0]
    assert np.array_equal(np.asarray(by_path), np.asarray(by_array))
    with pytest.raises(ImageError, match="NaN"):
        tiny_pipe.superres(np.full((8, 8, 3), np.nan), "x")


# ----- prompts -----------------------------------------------------------------------------------

def test_a_100000_character_prompt_is_truncated_not_a_crash(tiny_pipe):
    long = "a red heart with golden sparkles " * 3100
    assert len(long) > 100_000 and tiny_pipe.text_encoder.truncates(long)
    assert not tiny_pipe.text_encoder.truncates("red heart")
    image = tiny_pipe(long, timesteps=2, seed=0)[0]
    # Only the first max_length tokens count: the same prompt cut after them gives the same image.
    cut = tiny_pipe(long[: len(long) // 2], timesteps=2, seed=0)[0]
    assert np.array_equal(np.asarray(image), np.asarray(cut))


@pytest.mark.parametrize("prompt, error", [(None, TypeError), (["a", 3], TypeError), (["a"] * 17, ValueError),
                                           (b"bytes", TypeError)])
def test_bad_prompt_types(tiny_pipe, prompt, error):
    with pytest.raises(error):
        tiny_pipe(prompt, timesteps=2)


def test_odd_text_is_just_text(tiny_pipe):
    for prompt in ("\x00\x01 nul and control", "🚀" * 300, "   ", "ｆｕｌｌｗｉｄｔｈ", "a\u202eb"):
        assert tiny_pipe(prompt, timesteps=1, superres=False, seed=0)[0].size == (32, 32)


# ----- weights from an untrusted folder ----------------------------------------------------------

@pytest.fixture()
def saved_critic(tmp_path) -> Path:
    from tests.conftest import TINY_GEN
    from muse.config import TransformerConfig

    return MaskedTransformer(TransformerConfig(seq_len=64, kind="critic", **TINY_GEN)).save_pretrained(tmp_path / "m")


def test_non_finite_weights_are_refused(saved_critic):
    state = load_file(str(saved_critic / "model.safetensors"))
    name = next(k for k, v in state.items() if v.is_floating_point())
    state[name][0] = float("nan")
    save_file(state, str(saved_critic / "model.safetensors"))
    with pytest.raises(WeightsError, match="NaN or infinite"):
        MaskedTransformer.from_pretrained(saved_critic)


def test_integer_tensors_where_floats_belong_are_refused(saved_critic):
    state = load_file(str(saved_critic / "model.safetensors"))
    name = next(k for k, v in state.items() if v.is_floating_point())
    state[name] = state[name].to(torch.int32)
    save_file(state, str(saved_critic / "model.safetensors"))
    with pytest.raises(WeightsError, match="dtypes"):
        MaskedTransformer.from_pretrained(saved_critic)


def test_wrong_shapes_are_refused_before_any_tensor_is_read(saved_critic, monkeypatch):
    cfg = json.loads((saved_critic / "config.json").read_text())
    (saved_critic / "config.json").write_text(json.dumps({**cfg, "dim": 48}))
    import muse.hub

    def must_not_read(*args, **kwargs):
        raise AssertionError("tensors were read before the header was checked")

    monkeypatch.setattr(muse.hub, "load_file", must_not_read)
    with pytest.raises(WeightsError, match="do not match"):
        MaskedTransformer.from_pretrained(saved_critic)


@pytest.mark.parametrize("config, message", [
    ({"config_class": "VQConfig", "base_channels": 4096, "channel_mult": [4, 4, 4, 4], "res_blocks": 64},
     "parameters"),
    ({"config_class": "VQConfig", "commitment": float("nan")}, "commitment"),
    ({"config_class": "TransformerConfig", "attn_scale": 1e9}, "attn_scale"),
    ({"config_class": "TransformerConfig", "self_cond": "yes"}, "self_cond"),
    ([1, 2, 3], "JSON object"),
])
def test_absurd_configs_are_refused(tmp_path, config, message):
    (tmp_path / "config.json").write_text(json.dumps(config))
    cls = VQModel if isinstance(config, dict) and config.get("config_class") == "VQConfig" else MaskedTransformer
    with pytest.raises(WeightsError, match=message):
        cls.from_pretrained(tmp_path)


@pytest.mark.parametrize("change, message", [
    ({"base_size": 10**9}, "base_size"),
    ({"defaults": {"timesteps": -4}}, "timesteps"),
    ({"defaults": {"cond_scale": "NaN"}}, "cond_scale"),
    ({"text_encoder": 7}, "text_encoder"),
    ({"evil": True}, "unexpected keyword"),
])
def test_bad_pipeline_json_is_refused(tiny_weights, tmp_path, change, message):
    import shutil

    folder = Path(shutil.copytree(tiny_weights, tmp_path / "w"))
    spec = json.loads((folder / "pipeline.json").read_text())
    (folder / "pipeline.json").write_text(json.dumps({**spec, **change}))
    with pytest.raises(WeightsError, match=message):
        load_pipeline(folder)


def test_a_huge_pipeline_json_is_refused_unread(tiny_weights, tmp_path):
    import shutil

    folder = Path(shutil.copytree(tiny_weights, tmp_path / "w"))
    (folder / "pipeline.json").write_text(" " * (2 << 20) + "{}")
    with pytest.raises(WeightsError, match="implausibly large"):
        load_pipeline(folder)


# ----- the command line --------------------------------------------------------------------------

@pytest.mark.parametrize("args, message", [
    (["superres", "{missing}", "x"], "does not exist"),
    (["superres", "{notes}", "x"], "not a readable image"),
    (["inpaint", "{img}", "{small_mask}", "x"], "mask is 8x8 pixels"),
    (["generate", "x", "--cond-scale", "nan"], "cond_scale"),
    (["generate", "x", "--timesteps", "0"], "timesteps"),
    (["generate", "x", "--weights", "{notes}"], "is a file"),
    (["generate", "x", "--device", "gpu"], "unknown device"),
    (["generate", "x", "-o", "{img_dir}/out.xyz"], "unknown image extension"),
    (["generate", "  "], "the prompt is empty"),
    (["superres", "{img}", ""], "the prompt is empty"),
])
def test_cli_bad_input_is_one_line_and_exit_code_2(args, message, tiny_weights, tmp_path, capsys):
    (tmp_path / "notes.png").write_text("not an image")
    Image.new("RGB", (16, 16), "red").save(tmp_path / "img.png")
    Image.new("L", (8, 8), 255).save(tmp_path / "small_mask.png")
    paths = {"missing": tmp_path / "missing.png", "notes": tmp_path / "notes.png", "img": tmp_path / "img.png",
             "small_mask": tmp_path / "small_mask.png", "img_dir": tmp_path}
    argv = [a.format(**paths) for a in args]
    if "--weights" not in argv:
        argv += ["--weights", str(tiny_weights)]
    if "--device" not in argv:
        argv += ["--device", "cpu"]
    if "-o" not in argv:
        argv += ["-o", str(tmp_path / "out.png")]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and "Traceback" not in err
    assert not (tmp_path / "out.png").exists()


def test_cli_options_are_generated_from_the_settings_schema():
    from muse.settings import SCHEMA

    a = cli.parse(["generate", "x"])
    assert all(getattr(a, name) is None for name in SCHEMA)  # unset: the weights' tuned defaults apply
    a = cli.parse(["generate", "x", "--timesteps", "8", "--choice-temperature", "2", "--schedule", "arccos",
                   "--no-critic", "--base-only", "--can-remask-prev-masked", "--seed", "3"])
    assert (a.timesteps, a.choice_temperature, a.schedule, a.use_critic, a.superres, a.can_remask_prev_masked,
            a.seed) == (8, 2.0, "arccos", False, False, True, 3)
    assert cli.parse(["generate", "x", "--no-superres", "--use-critic"]).superres is False
    assert not hasattr(cli.parse(["superres", "small.png", "x"]), "superres")  # that command is the super-res stage
