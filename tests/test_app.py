"""The playground's handlers called directly (no server) and its logic (`muse.playground`). Outputs are
read by name (`OUTPUTS`), never by position. (The pictures themselves: test_viz.py.)"""

from __future__ import annotations

import importlib.util
import inspect
import json
import math
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import gradio as gr
import numpy as np
import pytest
from PIL import Image

from muse import playground, viz
from muse.compute import COMPUTE
from muse.hub import WeightsError
from muse.images import square
from muse.load import describe
from muse.pipeline import MusePipeline
from muse.playground import CONTROLS, LIMITS, OUTPUTS, REQUEST_SETTINGS, PlaygroundError, server, uploads
from muse.playground.transport import InlinePicture, slow_queue_poll
from muse.playground.controls import control_input, critic_noise_update
from muse.settings import ORDERS, SCHEMA, SettingError
from tests.harness.images import gradient

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


@pytest.fixture(scope="module")
def app(tiny_weights):
    """app.py with MUSE_WEIGHTS at the tiny random pipeline."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MUSE_WEIGHTS", str(tiny_weights))
        import app as module

        mp.setattr(module.endpoints, "FRAME_S", 0.0)  # every step streamed (the tiny model's steps come far
        yield module                                   # faster than the app's pace: test_a_paced_stream_...)


def request(**overrides):
    """Keyword arguments of a quick, reproducible request."""
    kwargs = dict(prompt="red heart", negative_prompt="", timesteps=4, cond_scale=3.0, temperature=1.0,
                  critic_noise_scale=1.0, topk_filter_thres=0.9, order="critic", schedule="cosine",
                  superres=True, seed=7, randomize_seed=False, num_images=1, previews=True)
    kwargs.update(overrides)
    return kwargs


def is_skip(value) -> bool:
    return isinstance(value, dict) and value.get("__type__") == "update" and len(value) == 1


def collect(stream, check_final_files=True):
    """Run a handler; check the files of the final update while they still exist (they are cleaned up
    when the stream closes)."""
    out = []
    for u in stream:
        u = dict(zip(OUTPUTS, u))  # the handler yields one value per output, in OUTPUTS order
        u["inline"] = {name for name, value in u.items() if isinstance(value, InlinePicture)}
        u.update({name: u[name].image for name in u["inline"]})  # a streamed step's pictures, sent inline
        if check_final_files and u["files"] is not None and not is_skip(u["files"]):
            for path in u["files"]:
                assert Path(path).is_file() and Path(path).stat().st_size > 0
            png = [p for p in u["files"] if p.endswith(".png")]
            assert png and Image.open(png[0]).format == "PNG"
            gifs = [p for p in u["files"] if p.endswith(".gif")]
            if gifs:
                with Image.open(gifs[0]) as gif:
                    assert gif.format == "GIF" and gif.n_frames >= 2
        out.append(u)
    return out


def test_a_bad_stream_pace_or_thread_count_is_a_one_line_message(tmp_path):
    env = {**os.environ, "MUSE_WEIGHTS": str(tmp_path / "nothing-here"), "PYTHONPATH": str(ROOT)}
    for name, value, message in (("MUSE_STREAM_FPS", "fast", "MUSE_STREAM_FPS must be a number of updates"),
                                 ("MUSE_STREAM_FPS", "-5", "MUSE_STREAM_FPS must be a number of updates"),
                                 ("MUSE_THREADS", "0", "MUSE_THREADS must be a whole number of threads")):
        done = subprocess.run([sys.executable, "-c", "import app; app.main()"], cwd=ROOT,
                              env={**env, name: value}, capture_output=True, text=True, timeout=180)
        assert done.returncode == 1 and done.stderr.strip().splitlines()[-1].startswith(message), done.stderr[-2000:]
        assert "Traceback" not in done.stderr


# ----- the model is loaded lazily ----------------------------------------------------------------

def test_import_builds_the_page_without_a_model(tmp_path):
    code = ("import app, sys; from muse.playground import MODEL; assert MODEL.loaded() is None; "
            "names = {f.api_name for f in app.demo.fns.values()}; "
            "assert {'generate', 'inpaint', 'superres'} <= names, names")
    env = {**os.environ, "MUSE_WEIGHTS": str(tmp_path / "nothing-here"), "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=180)
    assert done.returncode == 0, done.stderr[-2000:]
    # Gradio writes a type stub for FrameImage (a gr.Image variant) beside its module: git ignores it, so
    # importing the app leaves a checkout clean
    stub = ROOT / "muse" / "playground" / "transport.pyi"
    if stub.exists() and (ROOT / ".git").exists():
        ignored = subprocess.run(["git", "check-ignore", "-q", str(stub)], cwd=ROOT)
        assert ignored.returncode == 0, "transport.pyi is not git-ignored"


def test_missing_weights_give_a_clear_error_then_recover(app, tiny_weights, monkeypatch):
    monkeypatch.setenv("MUSE_WEIGHTS", str(tiny_weights.parent / "no-such-model"))
    with pytest.raises(gr.Error, match="model is not available"):
        collect(app.generate(**request()))
    monkeypatch.setenv("MUSE_WEIGHTS", str(tiny_weights))
    assert collect(app.generate(**request(timesteps=1, superres=False)))[-1]["status"].startswith("done")


def test_missing_shipped_weights_give_a_clear_error(app, tmp_path, monkeypatch):
    import muse.loader

    monkeypatch.delenv("MUSE_WEIGHTS")
    monkeypatch.setattr(muse.loader, "DEFAULT_WEIGHTS", tmp_path / "weights")  # as before training
    with pytest.raises(gr.Error, match="shipped model is missing"):
        collect(app.generate(**request()))


def test_endpoints_share_the_batchers_workers_and_a_bounded_queue(app):
    fns = {f.api_name: f for f in app.demo.fns.values()}
    heavy = [fns[name] for name in ("generate", "inpaint", "superres", "compare", "text_to_image")]
    assert all(f.concurrency_limit == server.decode_concurrency() > 1 for f in heavy)  # they decode together
    assert len({f.concurrency_id for f in heavy}) == 1
    assert all(f.api_visibility == "public" for f in heavy)

    class Blocks:  # what the queue is asked for (the line's bound is test_robustness's)
        def queue(self, **kwargs):
            self.asked = kwargs

    assert server.configure_queue(Blocks()).asked == {"max_size": server.QUEUE_SIZE,
                                                      "default_concurrency_limit": server.decode_concurrency()}
    assert server.QUEUE_SIZE > 0
    # the idle queue looks for events every 10 ms, not every 1 ms (part of a core): this fails when a Gradio
    # upgrade takes away what it sets, and the poll goes back to costing that
    assert slow_queue_poll(app.demo)


def test_only_zero_gpu_runs_the_handlers_on_a_gpu():
    fn = lambda: None  # noqa: E731
    assert server.gpu_decorator(None)(fn) is fn

    class Spaces:  # Hugging Face's `spaces`, as far as the app uses it
        @staticmethod
        def GPU(duration):
            return lambda f: ("on a GPU for", duration, f)

    assert server.gpu_decorator(Spaces)(fn) == ("on a GPU for", server.GPU_SECONDS, fn)
    assert server.ZERO_GPU == (importlib.util.find_spec("spaces") is not None)


# ----- streaming ---------------------------------------------------------------------------------

def test_generate_yields_one_update_per_step_per_stage_then_the_pictures(app):
    ups = collect(app.generate(**request()))
    assert len(ups) == 2 * 4 + 1  # every step; the last one again with the pictures of the decoding
    result = ups[-2]
    # a streamed step's pictures travel inside the update, and so does the image shown first (the next update
    # replaces it); the last update's pictures are files, written once and downloaded once
    assert all(u["inline"] == {"canvas", "prediction", "step_tokens", "schedule_plot"} for u in ups[:-1])
    assert not ups[-1]["inline"]
    expected = [f"{stage} {i}/4" for stage in ("base", "superres") for i in range(1, 5)]
    for u, label in zip(ups, expected):
        assert label in u["status"]
        size = playground.DISPLAY_SIZE if u is result else playground.STREAM_SIZE  # the page doubles a step's
        assert isinstance(u["canvas"], Image.Image) and u["canvas"].size == (size, size)
        assert isinstance(u["prediction"], Image.Image)
    assert "base 1/4 · " in ups[0]["status"] and "of 64 tokens fixed" in ups[0]["status"]
    # the first update clears the previous run's pictures; later ones leave them cleared: the cleared value
    # goes again (it travels as nothing) rather than a skip, which costs the server a rebuilt component
    assert ups[0]["seed"] == 7 and ups[0]["timeline"] is None and ups[0]["files"] is None
    assert all(u["files"] is None and u["timeline"] is None and u["seed"] == 7 for u in ups[1:-2])
    # the image comes first, before its files and the pictures of the decoding are drawn
    assert result["status"].startswith("done") and result["status"] == ups[-1]["status"]
    assert result["files"] is None and result["before_after"] is None and result["animation"] is None
    assert [Path(f).suffix for f in ups[-1]["files"]] == [".png", ".gif"]
    assert result["timeline"] is None and result["reveal_map"] is None and result["heat_map"] is None
    assert np.array_equal(np.asarray(result["canvas"]), np.asarray(ups[-1]["canvas"]))
    # the request's schedule plot comes with the first step, inline, and goes again unchanged (as nothing)
    assert all(u["schedule_plot"] is ups[0]["schedule_plot"] for u in ups[:-1])
    assert np.array_equal(np.asarray(ups[0]["schedule_plot"]), np.asarray(ups[-1]["schedule_plot"]))  # the run's
    final = ups[-1]
    assert final["status"].startswith("done") and "256 of 256 tokens fixed" in final["status"]
    assert final["seed"] == 7
    assert isinstance(final["canvas"], Image.Image)
    assert isinstance(final["timeline"], Image.Image)  # one picture: a row of 4 steps per stage
    assert final["timeline"].width >= 4 * playground.TIMELINE_SIZE > final["timeline"].height
    for name in ("reveal_map", "heat_map", "schedule_plot"):
        assert isinstance(final[name], Image.Image)
    assert final["animation"].endswith(".gif")
    before, after = final["before_after"]  # text to image: the base stage's result against the final one
    assert before.size == after.size and before.height > playground.DISPLAY_SIZE  # a label under each


def test_same_seed_same_image_and_randomize_reports_the_seed(app):
    a = collect(app.generate(**request(seed=11, superres=False)))[-1]["canvas"]
    b = collect(app.generate(**request(seed=11, superres=False)))[-1]["canvas"]
    assert np.array_equal(np.asarray(a), np.asarray(b))
    first = collect(app.generate(**request(randomize_seed=True, seed=11, timesteps=1, superres=False)))[0]
    assert isinstance(first["seed"], int) and f"seed {first['seed']}" in first["status"]


def test_base_only_and_previews_off(app):
    ups = collect(app.generate(**request(superres=False, previews=False, num_images=2)))
    assert len(ups) == 4 + 1  # (the result comes twice: then with the pictures of the decoding)
    assert all(u["canvas"] is None or is_skip(u["canvas"]) for u in ups[:-2])
    final = ups[-1]
    assert final["canvas"].size == (2 * playground.DISPLAY_SIZE, playground.DISPLAY_SIZE)  # two images side by side
    assert final["timeline"] is None and final["animation"] is None  # nothing to animate without previews
    assert "64 of 64 tokens fixed" in final["status"]


def test_inpaint_keeps_the_unmasked_region(app):
    image = gradient((64, 64))
    mask = Image.new("L", (64, 64), 0)
    mask.paste(255, (0, 0, 32, 64))  # regenerate the left half
    ups = collect(app.inpaint({"background": image, "layers": [mask], "composite": None}, **request()))
    assert len(ups) == 8 + 1
    assert "of 128 tokens fixed" in ups[-1]["status"]
    final = np.asarray(ups[-1]["canvas"])[::4, ::4]  # back to the model's 64 px
    original = np.asarray(square(image, 64))
    assert np.array_equal(final[:, 40:], original[:, 40:])  # well outside the painted half: untouched
    before, after = ups[-1]["before_after"]
    assert before.size == after.size


def test_inpaint_from_browser_layers_uses_alpha_against_the_background(app):
    background = gradient((120, 80)).convert("RGBA")
    layer = Image.new("RGBA", (240, 160), (0, 0, 0, 0))  # a canvas-sized layer: mapped onto the background
    layer.paste((255, 45, 122, 255), (0, 0, 120, 160))  # the left half painted, opaque brush
    rgb, mask = playground.editor_to_image_and_mask({"background": background, "layers": [layer], "composite": None})
    assert rgb.mode == "RGB" and mask.size == background.size
    m = np.asarray(mask) > 0
    assert m[:, :55].all() and not m[:, 65:].any()
    ups = collect(app.inpaint({"background": background, "layers": [layer], "composite": None},
                              **request(superres=False)))
    assert len(ups) == 4 + 1


def test_mask_rules(app):
    image = gradient()
    black, white = Image.new("L", image.size, 0), Image.new("L", image.size, 255)
    with pytest.raises(PlaygroundError, match="mask is empty"):
        playground.editor_to_image_and_mask({"background": image, "layers": [black]})
    with pytest.raises(PlaygroundError, match="mask is empty"):
        playground.editor_to_image_and_mask({"background": image, "layers": [Image.new("RGBA", image.size)]})
    with pytest.raises(PlaygroundError, match="no mask layer"):
        playground.editor_to_image_and_mask({"background": image, "layers": []})
    with pytest.raises(PlaygroundError, match="Upload an image"):
        playground.editor_to_image_and_mask({"background": None, "layers": [white]})
    _, mask = playground.editor_to_image_and_mask({"background": image, "layers": [white]})
    assert (np.asarray(mask) == 255).all()
    ups = collect(app.inpaint({"background": image, "layers": [white]}, **request(superres=False)))
    assert "64 of 64 tokens fixed" in ups[-1]["status"]  # all white: the whole image regenerated
    with pytest.raises(gr.Error, match="mask is empty"):  # through the endpoint: a message for the page
        collect(app.inpaint({"background": image, "layers": [black]}, **request()))


def test_superres_streams_the_superres_stage(app):
    ups = collect(app.superres(gradient((20, 20)), **{k: v for k, v in request().items() if k != "superres"}))
    assert len(ups) == 4 + 1 and all("superres" in u["status"] for u in ups)
    assert ups[-1]["canvas"].size == (playground.DISPLAY_SIZE,) * 2
    assert ups[-1]["before_after"] is not None
    with pytest.raises(gr.Error, match="Upload a low-resolution image"):
        collect(app.superres(None, "x"))


# ----- input checking ----------------------------------------------------------------------------

@pytest.mark.parametrize("bad, message", [
    (dict(prompt=""), "Type a prompt"),
    (dict(prompt="   \n"), "Type a prompt"),
    (dict(prompt=None), "Type a prompt"),
    (dict(prompt=123), "prompt must be text"),
    (dict(timesteps=0), "timesteps must be a whole number from 1 to 64"),
    (dict(timesteps=10_000), "timesteps must be"),
    (dict(timesteps=2.5), "timesteps must be"),
    (dict(timesteps=math.nan), "timesteps must be"),
    (dict(timesteps="many"), "timesteps must be"),
    (dict(timesteps=True), "timesteps must be"),
    (dict(cond_scale=-1), "cond_scale must be"),
    (dict(cond_scale=math.inf), "cond_scale must be"),
    (dict(temperature=math.nan), "temperature must be"),
    (dict(critic_noise_scale=4), "critic_noise_scale must be"),
    (dict(topk_filter_thres=1.0), "topk_filter_thres must be"),
    (dict(schedule="bogus"), "schedule must be one of"),
    (dict(num_images=0), "num_images must be"),
    (dict(num_images=5), "num_images must be"),
    (dict(seed=-1), "seed must be"),
    (dict(seed=2**40), "seed must be"),
    (dict(seed=None), "Give a seed"),
    (dict(order="sideways"), "order must be one of confidence, critic, halton, random; got 'sideways'"),
    (dict(order=True), "order must be one of"),
    (dict(previews=None), "previews must be true or false"),
])
def test_bad_settings_get_a_named_error(app, bad, message):
    with pytest.raises(gr.Error, match=message):
        collect(app.generate(**request(**bad)))


def test_a_100000_character_prompt_is_cut_and_says_so(app):
    ups = collect(app.generate(**request(prompt="red heart with sparkles " * 4200, timesteps=2)))
    assert ups[-1]["status"].startswith("done") and "prompt cut to the text encoder's" in ups[-1]["status"]
    short = collect(app.generate(**request(timesteps=2)))
    assert "cut to" not in short[-1]["status"]


def test_a_mask_of_another_shape_is_refused_one_of_another_scale_is_mapped(app):
    image = Image.new("RGB", (64, 32), "blue")
    wide = Image.new("L", (64, 64), 255)
    with pytest.raises(PlaygroundError, match="mask is 64x64 pixels but the image is 64x32"):
        playground.editor_to_image_and_mask({"background": image, "layers": [wide], "composite": None})
    double = Image.new("L", (128, 64), 0)
    double.paste(255, (0, 0, 64, 64))
    rgb, mask = playground.editor_to_image_and_mask({"background": image, "layers": [double], "composite": None})
    assert mask.size == (64, 32) and np.asarray(mask)[:, :32].all() and not np.asarray(mask)[:, 32:].any()


def test_numbers_from_the_api_are_accepted_in_any_json_form(app):
    ups = collect(app.generate(**request(timesteps=2.0, num_images="1", seed="3", superres="false")))
    assert len(ups) == 2 + 1 and ups[-1]["seed"] == 3


def save(image: Image.Image, path: Path) -> Path:
    image.save(path)
    return path


def test_open_image_reads_any_mode_and_size(app, tmp_path):
    big = uploads.open_image(save(Image.new("RGB", (6000, 6000), (200, 30, 30)), tmp_path / "big.png"))
    assert max(big.size) == uploads.WORK_SIZE and big.mode == "RGB"
    assert uploads.open_image(save(Image.new("L", (50, 70), 128), tmp_path / "gray.png")).mode == "RGB"
    assert uploads.open_image(save(Image.new("RGBA", (40, 40), (255, 0, 0, 90)), tmp_path / "rgba.png")).mode == "RGBA"
    assert uploads.open_image(save(Image.new("P", (40, 40), 3), tmp_path / "pal.png")).mode in ("RGB", "RGBA")
    deep = Image.fromarray(np.full((30, 30), 40_000, np.uint16))
    rgb = uploads.open_image(save(deep, tmp_path / "deep.png"))
    assert rgb.mode == "RGB" and 150 < np.asarray(rgb).mean() < 160  # 40000/65535 of white, not clipped
    assert uploads.open_image(save(Image.new("RGB", (30, 20)), tmp_path / "x.jpg")).size == (30, 20)
    (tmp_path / "notes.png").write_text("not an image at all")
    with pytest.raises(gr.Error, match="not a readable image"):
        uploads.open_image(tmp_path / "notes.png")
    with pytest.raises(gr.Error, match="not a readable image"):
        uploads.open_image(b"\x89PNG\r\n\x1a\n truncated")


def test_open_image_refuses_huge_images_before_decoding(app, tmp_path, monkeypatch):
    monkeypatch.setattr(uploads, "MAX_UPLOAD_PIXELS", 1000)
    with pytest.raises(gr.Error, match="megapixels"):
        uploads.open_image(save(Image.new("L", (40, 40)), tmp_path / "a.png"))


def test_unexpected_failures_are_logged_not_shown(app, monkeypatch, caplog):
    def boom(*args, **kwargs):
        raise RuntimeError("secret internal detail")

    pipe = playground.MODEL.get()
    monkeypatch.setattr(pipe, "stream", boom)
    with pytest.raises(gr.Error) as err:
        collect(app.generate(**request()))
    assert "secret" not in str(err.value) and "RuntimeError" in str(err.value)
    assert "secret internal detail" in caplog.text


def test_schedule_preview(app):
    assert isinstance(app.endpoints.schedule_preview("arccos", 8, True), Image.Image)
    assert is_skip(app.endpoints.schedule_preview("arccos", 0, True))
    assert is_skip(app.endpoints.schedule_preview("nope", 8, True))


def test_schedule_preview_before_the_model_is_loaded_counts_tokens_from_the_configs(app, tiny_pipe, monkeypatch):
    monkeypatch.setattr(playground.MODEL, "_pipe", None)
    assert playground.token_counts() == tiny_pipe.token_counts() == {"base": 64, "superres": 256}
    assert playground.token_counts(superres=False) == tiny_pipe.token_counts(superres=False)
    assert is_skip(app.endpoints.schedule_preview("cosine", 8, "maybe"))


# ----- one settings schema, outputs by name --------------------------------------------------------

def page_inputs(app, column: str = "") -> dict[str, object]:
    """The page's setting inputs by label: the main settings, or a side-by-side column's ("a", "b")."""
    kinds = (gr.Slider, gr.Number, gr.Dropdown, gr.Checkbox)
    ids = {f"{name}_{col}" for col in playground.COLUMNS for name in playground.COMPARE_SETTINGS} | {"compare_seed"}
    return {b.label: b for b in app.demo.blocks.values() if isinstance(b, kinds)
            and ((b.elem_id or "").endswith(f"_{column}") and b.elem_id in ids if column else b.elem_id not in ids)}


def test_side_by_side_columns_come_from_the_schema(app):
    defaults = playground.compare_defaults()
    for col in playground.COLUMNS:
        inputs = page_inputs(app, col)
        for name in playground.COMPARE_SETTINGS:
            setting, component = playground.control(name), inputs[playground.control(name).label]
            assert component.info == setting.help and component.value == defaults[f"{name}_{col}"], (col, name)
            if name in LIMITS:
                assert (component.minimum, component.maximum) == LIMITS[name], name
    # the first comparison: the page's order (the tiny weights' defaults rank by their critic) against Halton's
    assert (defaults["order_a"], defaults["order_b"]) == ("critic", "halton")


def test_every_control_comes_from_the_schema(app):
    inputs, defaults = page_inputs(app), playground.page_defaults()
    for name in CONTROLS:
        setting = playground.control(name)
        component = inputs[setting.label]
        assert component.info == setting.help and component.value == defaults[name], name
        if name in LIMITS:
            assert (component.minimum, component.maximum) == LIMITS[name], name
        if setting.step is not None:
            assert component.step == setting.step, name
        if setting.choices:
            assert [value for _, value in component.choices] == list(setting.choices)  # (the model has a critic)
    assert inputs[SCHEMA["timesteps"].label].value == 4  # the tiny weights' tuned default, not the schema's 12
    for name in CONTROLS:
        setting = playground.control(name)
        assert f"| **{setting.label}** | {setting.help} |" in app.EXPLANATION


def test_the_page_offers_the_orders_the_model_can_rank_by(app, tiny_weights, tmp_path, monkeypatch):
    label = SCHEMA["order"].label
    for column in ("", *playground.COLUMNS):  # the main settings and each side-by-side column
        assert [value for _, value in page_inputs(app, column)[label].choices] == list(ORDERS)
    assert "Use the token critic" not in page_inputs(app)  # the order replaces the critic's checkbox
    # a muse folder without a critic: no critic order, and the page's default is what its defaults rank by
    folder = tmp_path / "no-critic"
    shutil.copytree(tiny_weights, folder)
    shutil.rmtree(folder / "base_critic")
    monkeypatch.setenv("MUSE_WEIGHTS", str(folder))
    model = playground.page_model()
    assert not model.critic and model.choices("order") == ("confidence", "halton", "random")
    assert playground.page_defaults(model)["order"] == "confidence"  # (use_critic is on: no critic to rank)
    assert "critic_noise_scale" not in model.controls() and "order" in model.compare_settings()
    with gr.Blocks():
        dropdown = control_input("order", playground.page_defaults(model), model)
    assert [value for _, value in dropdown.choices] == ["confidence", "halton", "random"]
    with pytest.raises(PlaygroundError) as err:
        playground.check_request("red heart", {**playground.page_defaults(model), "order": "critic"}, model)
    assert str(err.value) == ("order must be one of confidence, halton, random (this model has no token critic); "
                              "got 'critic'.")
    assert "order (one of confidence, halton, random)" in " ".join(app.texts.setting_help("order", None, model).split())


def test_critic_noise_is_live_only_when_the_critic_ranks(app):
    label = SCHEMA["critic_noise_scale"].label
    defaults = playground.compare_defaults()
    assert page_inputs(app)[label].interactive is True  # the tiny weights' defaults rank by the critic
    assert page_inputs(app, "a")[label].interactive is True and defaults["order_a"] == "critic"
    assert page_inputs(app, "b")[label].interactive is False and defaults["order_b"] == "halton"
    for order in ORDERS:
        assert critic_noise_update(order) == gr.update(interactive=order == "critic")
        assert playground.critic_noise_acts(order) == (order == "critic")
    assert "acts only when the critic ranks" in SCHEMA["critic_noise_scale"].help  # what the slider's info says


def test_use_critic_is_not_an_endpoint_parameter_and_a_client_sending_it_is_told_what_to_send(app):
    for handler in (app.generate, app.inpaint, app.superres):
        params = inspect.signature(handler).parameters
        assert "order" in params and "use_critic" not in params
        # the API page and MCP describe the order from the schema, with the choices the model offers
        assert f"order: {SCHEMA['order'].help} (one of confidence, critic, halton, random)" in handler.__doc__
    params = inspect.signature(app.compare).parameters
    assert {"order_a", "order_b"} <= set(params) and not {"use_critic_a", "use_critic_b"} & set(params)
    assert "order_b: " in app.compare.__doc__ and "column B" in app.compare.__doc__
    with pytest.raises(gr.Error, match=re.escape("use_critic is not a parameter of this endpoint: send order instead "
                                                 "(use_critic=True is order='critic').")):
        collect(app.generate(**request(use_critic=True)))
    with pytest.raises(gr.Error, match=re.escape("send order_b instead (use_critic_b=True is order_b='critic')")):
        compared(app.compare(**compare_request(use_critic_b=True)))


def test_page_defaults_are_the_weights_tuned_values_within_the_limits(tiny_weights, tmp_path, monkeypatch):
    folder = tmp_path / "tuned"
    (folder / "vq").mkdir(parents=True)
    shutil.copy(tiny_weights / "vq" / "config.json", folder / "vq" / "config.json")
    spec = json.loads((tiny_weights / "pipeline.json").read_text())
    spec["defaults"] = {"timesteps": 100, "cond_scale": 2.5, "use_critic": False, "schedule": "linear"}
    (folder / "pipeline.json").write_text(json.dumps(spec))
    monkeypatch.setenv("MUSE_WEIGHTS", str(folder))
    d = playground.page_defaults()
    assert (d["timesteps"], d["cond_scale"], d["order"], d["schedule"]) == (64, 2.5, "confidence", "linear")
    assert "use_critic" not in d  # the page sets the order alone
    assert d["temperature"] == SCHEMA["temperature"].default and d["seed"] == 0 and d["randomize_seed"] is True
    spec["defaults"] = {"timesteps": "many"}  # refused by the validated config: the schema's defaults
    (folder / "pipeline.json").write_text(json.dumps(spec))
    assert playground.page_defaults()["timesteps"] == SCHEMA["timesteps"].default


def test_describe_reads_a_folder_without_loading_it(tiny_weights, tiny_pipe, tmp_path):
    summary = describe(tiny_weights)
    assert summary.token_counts() == tiny_pipe.token_counts()
    assert summary.token_counts(superres=False) == tiny_pipe.token_counts(superres=False)
    assert summary.config.defaults == {"timesteps": 4}
    with pytest.raises(WeightsError, match="missing pipeline.json"):
        describe(tmp_path)
    (tmp_path / "pipeline.json").write_text('{"base_size": "big"}')
    with pytest.raises(WeightsError, match="base_size"):
        describe(tmp_path)


def test_the_app_checks_through_the_schema_with_its_tighter_limits():
    for name, (lo, hi) in LIMITS.items():
        with pytest.raises(SettingError) as expected:
            SCHEMA[name].check(2 * hi + 1, (lo, hi), coerce=True)
        with pytest.raises(PlaygroundError) as got:
            playground.check_setting(name, 2 * hi + 1)
        assert str(got.value) == str(expected.value)
    with pytest.raises(PlaygroundError) as got:
        playground.check_setting("timesteps", 0)
    assert str(got.value) == "timesteps must be a whole number from 1 to 64, got 0."  # the messages of before
    with pytest.raises(PlaygroundError) as got:
        playground.check_setting("schedule", "bogus")
    assert str(got.value) == "schedule must be one of cosine, linear, arccos, power; got 'bogus'."
    assert playground.check_setting("timesteps", " 12 ") == 12  # as API clients send them
    assert playground.check_setting("previews", "false") is False


def test_endpoints_take_the_request_settings_by_name(app):
    defaults = playground.page_defaults()
    for handler, leading in ((app.generate, ["prompt"]), (app.inpaint, ["image", "prompt"]),
                             (app.superres, ["image", "prompt"])):
        settings = [n for n in REQUEST_SETTINGS if handler is not app.superres or n != "superres"]
        params = inspect.signature(handler).parameters
        assert list(params) == leading + settings
        assert all(params[n].default == defaults[n] for n in settings)


def test_updates_are_keyed_by_output_name(tiny_pipe):
    values = {**playground.page_defaults(), "timesteps": 2, "seed": 3, "randomize_seed": False, "superres": True}
    request = playground.check_request("red heart", values)
    kwargs = request.pipeline_kwargs(tiny_pipe)
    steps = tiny_pipe.stream(request.prompt, previews=request.previews, **kwargs)
    updates = list(playground.stream_updates(steps, kwargs["settings"], ranking=tiny_pipe.ranking(kwargs["settings"])))
    # every update but the last is marked as a run's passing frame; the image comes first without its files
    # and the pictures of the decoding, then with them
    assert [u.pop(playground.PASSING, False) for u in updates] == [True, True, True, True, False]
    assert len(updates) == 5 and all(set(u) <= set(OUTPUTS) for u in updates)
    assert set(updates[0]) == set(OUTPUTS) - {"schedule_plot"}  # the first clears the previous run's results
    # later ones show the step and leave the rest alone
    assert set(updates[1]) == {"status", *playground.STEP_OUTPUTS}
    assert set(updates[-2]) == set(OUTPUTS) - set(playground.PICTURE_OUTPUTS) - set(playground.RESULT_FILES)
    assert set(updates[-1]) == set(OUTPUTS) and updates[-1]["seed"] == 3


# ----- replaying a run, before / after, the brush ----------------------------------------------------

def test_the_step_slider_replays_each_step_without_decoding_again(app, monkeypatch):
    ups = collect(app.generate(**request()))
    key = ups[-1]["replay"]
    assert isinstance(key, str) and ups[0]["replay"] == key
    # the slider follows the live run; its range is sent with the first step only (a range update makes
    # Gradio rebuild the slider's config, which costs more than a step), the position with every step
    assert ups[0]["scrub"]["value"] == 1 and ups[0]["scrub"]["maximum"] == 8
    assert [u["scrub"] for u in ups[1:]] == list(range(2, 9)) + [8]  # (the result comes twice)

    def no_decoding(*args, **kwargs):
        raise AssertionError("replaying must not decode")

    monkeypatch.setattr(playground.MODEL, "get", no_decoding)
    for k in (2, 5, 8):
        frame = playground.replay(key, k)
        streamed = ups[k - 1]
        assert np.array_equal(np.asarray(frame["canvas"]), np.asarray(streamed["canvas"]))
        assert np.array_equal(np.asarray(frame["prediction"]), np.asarray(streamed["prediction"]))
        assert np.array_equal(np.asarray(frame["step_tokens"]), np.asarray(streamed["step_tokens"]))
        assert frame["step_info"] == streamed["step_info"] and frame["scrub"].value == k
    assert playground.replay(key, "3")["step_info"].startswith("base 3/4")  # as a slider sends it
    assert "superres 1/4" in playground.replay(key, 5)["step_info"]
    # play: step after step, then it stops at the end; from the end it starts again
    shown, k, more = [], 1, True
    while more:
        frame, more = playground.play_next(key, k)
        k = frame["scrub"].value
        shown.append(k)
    assert shown == list(range(2, 9))
    assert playground.play_next(key, 8)[0]["scrub"].value == 1
    for bad in (0, 9, 2.5, "x", float("nan")):
        with pytest.raises(PlaygroundError, match="step must be a whole number from 1 to 8"):
            playground.replay(key, bad)
    with pytest.raises(PlaygroundError, match="no run to replay"):
        playground.replay("not-a-run", 1)
    for bad in (0.0, 10, "fast"):
        with pytest.raises(PlaygroundError, match="play speed"):
            playground.check_speed(bad)


def test_a_paced_stream_coalesces_steps_and_says_how_many_went(app, monkeypatch):
    # a pace slower than any run: only the steps that always go (the first, each stage's last, the result)
    monkeypatch.setattr(app.endpoints, "FRAME_S", 60.0)
    ups = collect(app.generate(**request()))
    assert [u["status"].split(" · ")[0] for u in ups[:-2]] == ["base 1/4", "base 4/4"]
    assert ups[0]["scrub"]["value"] == 1 and [u["scrub"] for u in ups[1:]] == [4, 8, 8]  # to the step shown
    final = ups[-1]
    assert "3 of 8 steps shown live (the step slider has each)" in final["status"]
    # nothing is lost: the run's every step replays, the timeline has them all, and the image is the
    # same as with every step streamed
    key = final["replay"]
    assert [playground.replay(key, k)["step_info"].split(" · ")[0] for k in range(1, 9)] == \
        [f"{stage} {i}/4" for stage in ("base", "superres") for i in range(1, 5)]
    monkeypatch.setattr(app.endpoints, "FRAME_S", 0.0)
    every = collect(app.generate(**request()))
    assert len(every) == 8 + 1 and "shown live" not in every[-1]["status"]
    assert np.array_equal(np.asarray(every[-1]["canvas"]), np.asarray(final["canvas"]))
    assert np.array_equal(np.asarray(every[-1]["timeline"]), np.asarray(final["timeline"]))


def test_the_pace_is_shared_by_the_streams_decoding_at_once():
    # with two pages decoding, each gets an update every 2 x frame_s: drawing and sending steps costs the
    # server the same with one page decoding as with eight
    others = playground.Pace.decoding()  # (0 unless a stream of an earlier test is still open)
    now = [0.0]
    a, b = playground.Pace(1.0, clock=lambda: now[0]), playground.Pace(1.0, clock=lambda: now[0])
    with a, b:
        a.went()
        now[0] = 1.0 * (others + 1)
        assert a.due() and playground.Pace.decoding() == others + 1
        b.went()  # b's first update: it decodes too
        assert playground.Pace.decoding() == others + 2 and not a.due() and a.due(always=True)
        now[0] = 1.0 * (others + 2)
        assert a.due()
    assert playground.Pace.decoding() == others  # a stream that ended (or was cancelled) no longer counts


def test_a_paced_stream_draws_no_step_its_reader_has_not_taken():
    from muse.batching import Batcher

    def steps():  # a stream's loop: a step every 30 ms, paced every 1 ms
        with playground.Pace(0.001) as pace:
            for i in range(5):
                time.sleep(0.03)
                if pace.due(always=i == 0):
                    pace.went()
                    yield i

    with Batcher(1) as batcher:
        unread = batcher.stream(steps)
        unread.result(timeout=30)  # nobody reads until the request has ended: only the first step was drawn
        assert list(unread) == [0]
        assert len(list(batcher.stream(steps))) > 1  # a reader that keeps up gets the steps as they come


def test_a_paced_comparison_keeps_the_first_each_end_and_the_result(app, monkeypatch):
    monkeypatch.setattr(app.endpoints, "FRAME_S", 60.0)
    ups = compared(app.compare(**compare_request(timesteps_b=6)))

    def shown(status):  # "done · superres 4/4 · 256 of 256 tokens fixed" -> "done · superres 4/4"
        return re.match(r"(done · )?\w+ \d+/\d+", status).group(0)

    # the first pair, then each pair where a column ends a stage (a: 4 steps a stage, b: 6)
    assert [(shown(u["status_a"]), shown(u["status_b"])) for u in ups] == [
        ("base 1/4", "base 1/6"), ("base 4/4", "base 4/6"), ("superres 2/4", "base 6/6"),
        ("done · superres 4/4", "superres 2/6"), ("done · superres 4/4", "done · superres 6/6")]


def test_the_forward_passes_run_on_the_one_compute_thread_and_requests_share_them(app, monkeypatch):
    """Every forward pass of every request runs on muse.compute's thread, whichever thread asks for it (each
    request decodes on a job thread of the batcher, Gradio streams from a pool): the process keeps one
    OpenMP pool, and torch its fast path. Requests decoding at the same time share passes."""
    from muse.playground.model import batcher
    from muse.transformer import MaskedTransformer

    seen, steps = set(), set()
    real_forward, real_many, real_stream = MaskedTransformer.forward, MaskedTransformer.forward_many, MusePipeline.stream

    def forward(self, *args, **kwargs):
        seen.add(threading.get_ident())
        return real_forward(self, *args, **kwargs)

    def forward_many(self, *args, **kwargs):
        seen.add(threading.get_ident())
        return real_many(self, *args, **kwargs)

    def stream(self, *args, **kwargs):
        for step in real_stream(self, *args, **kwargs):
            steps.add(threading.get_ident())
            yield step

    monkeypatch.setattr(MaskedTransformer, "forward", forward)
    monkeypatch.setattr(MaskedTransformer, "forward_many", forward_many)
    monkeypatch.setattr(MusePipeline, "stream", stream)
    shared = batcher().stats.shared
    threads = [threading.Thread(target=lambda: collect(app.generate(**request(timesteps=12)))) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert seen == {COMPUTE.call(threading.get_ident)}
    assert len(steps) == 3 and threading.get_ident() not in steps and not steps & seen  # a thread per request
    assert batcher().stats.shared > shared


def test_a_halton_request_streams_steps_ranked_in_the_halton_order(app):
    ups = collect(app.generate(**request(order="halton")))
    run = playground.REPLAYS.get(ups[-1]["replay"])  # the run's steps, as the step slider replays them
    assert [s.state.ranking for s in run.steps] == ["halton"] * 8
    assert all("Halton order" in u["status"] for u in ups)
    final = ups[-1]
    assert final["status"].startswith("done") and isinstance(final["heat_map"], Image.Image)
    assert isinstance(final["timeline"], Image.Image) and isinstance(final["reveal_map"], Image.Image)
    # the order is what ranked the tokens: at every step they are the next ones in it
    for s in run.steps:
        place = np.sort(viz.order_place(s)[s.revealed[0].numpy()])
        assert np.array_equal(place, np.arange(s.num_fixed - len(place), s.num_fixed)), s.label
    # the dropdown says what ranks: weights whose defaults turn the critic on (the tiny ones) do not put it in
    # charge of a request in the confidence order
    plain = collect(app.generate(**request(order="confidence", superres=False)))
    assert [s.state.ranking for s in playground.REPLAYS.get(plain[-1]["replay"]).steps] == ["confidence"] * 4


def test_step_info_names_what_ranked_the_tokens(app):
    critic = collect(app.generate(**request(order="critic", superres=False)))
    plain = collect(app.generate(**request(order="confidence", superres=False)))
    assert "critic P(right)" in critic[0]["step_info"] and "model p" in plain[0]["step_info"]
    assert "noise chose" in plain[0]["step_info"]
    assert "last step fixes every remaining token" in plain[-1]["step_info"]
    assert "ranked by the critic" in critic[0]["status"] and "ranked by confidence" in plain[-1]["status"]
    halton = collect(app.generate(**request(order="halton", superres=False)))
    # the order chose the tokens: the line names it and their places in it, and does not call p the ranking
    assert "the next in the Halton order (places 0-" in halton[0]["step_info"], halton[0]["step_info"]
    assert "not the ranking" in halton[0]["step_info"] and "no noise" in halton[0]["step_info"]
    assert "critic" not in halton[0]["step_info"] and "noise chose" not in halton[0]["step_info"]


def test_before_after_of_text_to_image_is_the_base_result_then_the_final(app):
    final = collect(app.generate(**request(seed=21)))[-1]
    before, after = final["before_after"]
    size = playground.DISPLAY_SIZE
    served = playground.MODEL.get()  # the app's model (loaded: bfloat16 where the CPU computes it natively)
    base_only = served("red heart", timesteps=4, cond_scale=3.0, seed=21, superres=False)[0]
    # the same seed decodes the same base stage first: its 32 px result, upscaled, above its label
    assert np.array_equal(np.asarray(before)[:size], np.asarray(viz.upscale(base_only, size)))
    assert np.array_equal(np.asarray(after)[:size], np.asarray(final["canvas"]))


def test_inpaint_status_says_how_much_the_mask_covers(app):
    image, mask = gradient((64, 64)), Image.new("L", (64, 64), 0)
    mask.paste(255, (0, 0, 8, 8))
    final = collect(app.inpaint({"background": image, "layers": [mask], "composite": None}, **{
        k: v for k, v in request(superres=False).items()}))[-1]
    assert "mask covers 2% of the image" in final["status"]
    before, after = final["before_after"]
    assert before.size == after.size


def test_the_brush_is_an_eighth_of_the_editor_canvas(app):
    editor = next(b for b in app.demo.blocks.values() if getattr(b, "elem_id", None) == "editor")
    assert editor.canvas_size == (playground.EDIT_SIZE, playground.EDIT_SIZE) and editor.fixed_canvas
    assert 2 * editor.brush.default_size == playground.EDIT_SIZE // 8  # the size is a radius, in canvas pixels


# ----- side by side ---------------------------------------------------------------------------------

def compare_request(**overrides):
    kwargs = dict(prompt="red heart", seed=4, randomize_seed=False, superres=True, timesteps_a=4, timesteps_b=4,
                  order_a="critic", order_b="confidence")
    kwargs.update(overrides)
    return kwargs


def decoded_alone(prompt: str, **settings) -> Image.Image:
    """The served pipeline's image for `prompt` decoded alone, on the compute thread the app's forwards run on:
    with another torch thread count a product's sums split otherwise, and a near tie of the tiny model flips."""
    return COMPUTE.call(lambda: playground.MODEL.get()(prompt, **settings)[0])


def compared(stream):
    ups = [dict(zip(playground.COMPARE_OUTPUTS, u)) for u in stream]
    for u in ups:
        u["inline"] = {name for name, value in u.items() if isinstance(value, InlinePicture)}
        u.update({name: u[name].image for name in u["inline"]})
    return ups


def test_side_by_side_streams_two_columns_and_where_they_differ(app):
    ups = compared(app.compare(**compare_request(timesteps_b=6)))
    assert len(ups) == 2 * 6  # the longer column sets the pace; the shorter keeps its final image
    assert ups[0]["status_a"].startswith("base 1/4") and ups[0]["status_b"].startswith("base 1/6")
    assert ups[0]["compare_seed"] == 4
    assert all(u["status_a"].startswith("done") for u in ups[7:])  # finished: its result stays
    assert ups[-1]["status_b"].startswith("done") and ups[-1]["compare_info"].startswith("done")
    for u in ups:
        assert isinstance(u["difference"], Image.Image)
    # each column is the pipeline's own result for its settings (the page's order alone: use_critic off, which
    # the tiny weights' defaults turn on)
    for col, kwargs in (("a", dict(timesteps=4, order="critic")), ("b", dict(timesteps=6, order="confidence"))):
        final = ups[-1]
        alone = decoded_alone("red heart", seed=4, cond_scale=page_value("cond_scale"), use_critic=False, **kwargs)
        assert np.array_equal(np.asarray(final[f"canvas_{col}"]),
                              np.asarray(viz.upscale(alone, playground.DISPLAY_SIZE)))


def test_side_by_side_confidence_against_halton_from_one_seed(app):
    ups = compared(app.compare(**compare_request(order_a="confidence", order_b="halton")))
    final = ups[-1]
    # each column says what ranked its tokens, from the first step to the result
    assert all("ranked by confidence" in u["status_a"] and "Halton order" in u["status_b"] for u in ups)
    assert final["status_a"].startswith("done") and final["status_b"].startswith("done")
    assert not np.array_equal(np.asarray(final["canvas_a"]), np.asarray(final["canvas_b"]))  # two images
    differ = [int(n) for n in re.findall(r"(\d+) of \d+ tokens fixed in both differ", final["compare_info"])]
    assert len(differ) == 2 and all(n > 0 for n in differ)  # in both stages
    for col, order in (("a", "confidence"), ("b", "halton")):  # one seed: each the pipeline's own image
        alone = decoded_alone("red heart", seed=4, timesteps=4, cond_scale=page_value("cond_scale"), order=order,
                              use_critic=False)
        assert np.array_equal(np.asarray(final[f"canvas_{col}"]),
                              np.asarray(viz.upscale(alone, playground.DISPLAY_SIZE)))


def page_value(name):
    return playground.page_defaults()[name]


def test_side_by_side_settings_are_checked_by_the_schema(app):
    with pytest.raises(gr.Error, match="timesteps"):
        compared(app.compare(**compare_request(timesteps_b=0)))
    with pytest.raises(gr.Error, match="schedule"):
        compared(app.compare(**compare_request(schedule_a="zigzag")))
    with pytest.raises(gr.Error, match="Type a prompt"):
        compared(app.compare(**compare_request(prompt="  ")))
    names = list(inspect.signature(app.compare).parameters)
    assert names[0] == "prompt" and {"order_a", "critic_noise_scale_b", "schedule_a", "cond_scale_b",
                                      "temperature_a", "timesteps_b", "seed"} <= set(names)
    assert all(n[:-2] in SCHEMA for n in names if n.endswith(("_a", "_b")))


def test_the_status_line_says_when_the_model_is_ready(app, monkeypatch):
    """While the model loads in the background the page says so and asks again each second; once it is
    ready, or failed, it says that and stops asking."""
    model = playground.MODEL
    model.get()

    def status():
        text, timer = app.endpoints.model_status()
        return text["placeholder"], (timer if is_skip(timer) else timer.active)

    monkeypatch.setattr(model, "_starting", True)
    placeholder, timer = status()
    assert placeholder == app.endpoints.MODEL_LOADING and is_skip(timer)  # loaded, still warming up: not ready yet
    monkeypatch.setattr(model, "_starting", False)
    assert status() == (app.endpoints.MODEL_READY, False)
    monkeypatch.setattr(model, "_pipe", None)
    monkeypatch.setattr(model, "start_error", "The model is not available (x): no such folder.")
    placeholder, timer = status()
    assert placeholder.startswith("the model did not load: The model is not available") and timer is False
    monkeypatch.setattr(model, "start_error", None)  # never loaded in the background: the first request will
    assert status() == ("waiting for a prompt (the model loads with the first one)", False)


def test_a_background_load_that_fails_is_reported(app, monkeypatch, tmp_path):
    model = playground.MODEL
    for name in ("_pipe", "_source", "start_error"):  # restored after the test, for the tests that follow
        monkeypatch.setattr(model, name, getattr(model, name))
    monkeypatch.setenv("MUSE_WEIGHTS", str(tmp_path / "missing"))
    model.load_in_background().result(60)
    assert not model.is_starting() and not model.is_ready()
    text, timer = app.endpoints.model_status()
    assert text["placeholder"].startswith("the model did not load: The model is not available") and not timer.active
