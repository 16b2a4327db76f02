"""The pipeline end to end on tiny random weights: streaming, stages, inpainting, super-res, loading."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from muse import load_pipeline
from muse.compiled import is_compiled
from muse.hub import WeightsError
from muse.images import mask_to_grid, pil_to_tensor, tensor_to_pil
from muse.runner import TextContext
from muse.transformer import MaskedTransformer, inference_dtype

from .conftest import make_tiny_pipeline


def test_stream_yields_every_step_of_both_stages(tiny_pipe):
    steps = list(tiny_pipe.stream("a cat", timesteps=5, seed=0))
    assert [(s.stage, s.step, s.total) for s in steps] == [("base", k, 5) for k in range(1, 6)] + \
        [("superres", k, 5) for k in range(1, 6)]
    assert all(s.canvas and s.prediction for s in steps)
    assert steps[-1].is_final and not any(s.is_final for s in steps[:-1])
    assert steps[0].canvas[0].size == (32, 32) and steps[-1].canvas[0].size == (64, 64)
    assert steps[2].label.startswith("base 3/5 · ") and steps[2].label.endswith(" of 64 tokens fixed")
    assert steps[-1].num_fixed == 256 and not steps[-1].masked.any()
    # Still-masked tokens are visibly greyed on the canvas.
    s = steps[0]
    canvas = np.asarray(s.canvas[0]).astype(int)
    cell = s.masked[0].nonzero()[0].tolist()
    block = canvas[cell[0] * 4:cell[0] * 4 + 4, cell[1] * 4:cell[1] * 4 + 4]
    assert np.abs(block - 128).max() <= 0.25 * 128 + 1
    # The prediction is the same picture with the guesses showing: equal wherever nothing is masked.
    for s in steps[:-1]:
        fixed = ~s.masked[0].repeat_interleave(4, 0).repeat_interleave(4, 1).numpy()
        assert np.array_equal(np.asarray(s.canvas[0])[fixed], np.asarray(s.prediction[0])[fixed])
    assert np.array_equal(np.asarray(steps[-1].canvas[0]), np.asarray(steps[-1].prediction[0]))


def test_a_step_holds_its_sampler_state(tiny_pipe):
    import dataclasses

    step = next(iter(tiny_pipe.stream("a cat", timesteps=2, seed=0)))
    for name in ("step", "total", "ids", "pred_ids", "masked", "revealed", "scores", "log_probs", "critic_scores",
                 "keep_noise"):
        assert getattr(step, name) is getattr(step.state, name)
    moved = dataclasses.replace(step, canvas=None)
    assert moved.state is step.state and moved.canvas is None and moved.label == step.label


def test_call_returns_images_and_is_reproducible(tiny_pipe):
    a = tiny_pipe(["a cat", "a dog"], seed=3, num_images=2)
    b = tiny_pipe(["a cat", "a dog"], seed=3, num_images=2)
    assert len(a) == 4 and all(im.size == (64, 64) for im in a)
    assert all(np.array_equal(np.asarray(x), np.asarray(y)) for x, y in zip(a, b))
    c = tiny_pipe(["a cat", "a dog"], seed=4, num_images=2)
    assert any(not np.array_equal(np.asarray(x), np.asarray(y)) for x, y in zip(a, c))
    small = tiny_pipe("a cat", seed=0, superres=False)
    assert small[0].size == (32, 32)
    # Previews do not change the result.
    streamed = list(tiny_pipe.stream(["a cat", "a dog"], seed=3, num_images=2))[-1].canvas
    assert all(np.array_equal(np.asarray(x), np.asarray(y)) for x, y in zip(a, streamed))


def test_negative_prompt_changes_only_the_unconditional_half(tiny_pipe):
    def context(negatives):
        text = TextContext.encode(tiny_pipe.text_encoder, ["a cat"], negatives, 1, tiny_pipe.device)
        return text.prepare(tiny_pipe.base_model, None, 3.0)

    plain, negative = context(None), context(["a dog"])
    # The negative prompt is padded to the prompt's length, so compare the shared prefix of keys.
    for (kp, _), (kn, _) in zip(plain.kv, negative.kv):
        n = min(kp.shape[2], kn.shape[2])
        assert torch.allclose(kp[:1, :, :n][:, :, plain.mask[0, 0, 0, :n]], kn[:1, :, :n][:, :, negative.mask[0, 0, 0, :n]])
    # The null half attends only the null key: it is carried as null_rows, with no keys of its own.
    assert plain.null_rows == 1 and plain.kv[0][0].shape[0] == 1
    assert negative.null_rows == 0 and negative.kv[0][0].shape[0] == 2 and negative.mask[1:, ..., 1:].any()
    assert torch.equal(plain.mask[:1].sum(), negative.mask[:1].sum())
    a = tiny_pipe("a cat", seed=0)[0]
    b = tiny_pipe("a cat", negative_prompt="a dog", seed=0)[0]
    assert not np.array_equal(np.asarray(a), np.asarray(b))
    # At cond_scale 1 there is no unconditional half, so a negative prompt has nothing to change.
    c = tiny_pipe("a cat", cond_scale=1.0, seed=0)[0]
    d = tiny_pipe("a cat", negative_prompt="a dog", cond_scale=1.0, seed=0)[0]
    assert np.array_equal(np.asarray(c), np.asarray(d))


def _picture(size=(80, 50), mode="RGB"):
    rng = np.random.default_rng(0)
    arr = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    return Image.fromarray(arr).convert(mode)


def test_inpaint_keeps_known_tokens_and_pixels(tiny_pipe):
    image = _picture((64, 64))
    mask = Image.new("L", (64, 64))
    mask.paste(255, (0, 0, 32, 32))
    steps = list(tiny_pipe.stream_inpaint(image, mask, "a cat", timesteps=4, seed=0))
    base_region, sr_region = mask_to_grid(mask, 8), mask_to_grid(mask, 16)
    # Known tokens are the image's own, encoded with the region blanked so nothing under it leaks.
    small = pil_to_tensor([image.resize((32, 32), Image.Resampling.BOX)])
    known_base = tiny_pipe.vq.encode(tiny_pipe.renderer.blank(small, base_region))
    known_sr = tiny_pipe.vq.encode(tiny_pipe.renderer.blank(pil_to_tensor([image]), sr_region))
    assert int(base_region.sum()) == 16 and int(sr_region.sum()) == 64
    for s in steps:
        known, region = (known_base, base_region) if s.stage == "base" else (known_sr, sr_region)
        assert torch.equal(s.ids[0][~region], known[0][~region])
        assert s.num_tokens == int(region.sum())
    out = np.asarray(steps[-1].canvas[0])
    assert np.array_equal(out[32:, :], np.asarray(image)[32:, :])  # outside the mask: original pixels
    assert steps[-1].is_final and not steps[-1].masked.any()


def test_inpaint_fill_does_not_see_original_content(tiny_pipe):
    """Two images that differ only under the mask give the same fill."""
    a = _picture((64, 64))
    arr = np.asarray(a).copy()
    arr[:32, :32] = 255 - arr[:32, :32]
    b = Image.fromarray(arr)
    mask = Image.new("L", (64, 64))
    mask.paste(255, (0, 0, 32, 32))
    fa = tiny_pipe.inpaint(a, mask, "a cat", timesteps=4, seed=1)[0]
    fb = tiny_pipe.inpaint(b, mask, "a cat", timesteps=4, seed=1)[0]
    assert np.array_equal(np.asarray(fa)[:32, :32], np.asarray(fb)[:32, :32])


@pytest.mark.parametrize("mode", ["RGBA", "L", "P", "I;16", "CMYK"])
def test_inpaint_and_superres_take_any_mode_and_size(tiny_pipe, mode):
    image = _picture((90, 40), "RGB").convert(mode) if mode != "I;16" else Image.new("I;16", (90, 40), 30000)
    mask = Image.new("RGBA", (90, 40), (0, 0, 0, 0))
    mask.paste((255, 255, 255, 255), (0, 0, 45, 40))
    assert tiny_pipe.inpaint(image, mask, "x", timesteps=2, seed=0)[0].size == (64, 64)
    assert tiny_pipe.superres(image, "x", timesteps=2, seed=0)[0].size == (64, 64)


def test_inpaint_empty_mask_is_a_clear_error(tiny_pipe):
    with pytest.raises(ValueError, match="mask is empty"):
        tiny_pipe.inpaint(_picture(), Image.new("L", (80, 50)), "x")


def test_superres_streams_one_stage(tiny_pipe):
    steps = list(tiny_pipe.stream_superres(_picture((32, 32)), "a cat", timesteps=3, seed=0))
    assert [s.stage for s in steps] == ["superres"] * 3 and steps[-1].is_final
    # The conditioning image matters.
    a = tiny_pipe.superres(_picture((32, 32)), "a cat", timesteps=3, seed=0)[0]
    b = tiny_pipe.superres(Image.new("RGB", (32, 32), "white"), "a cat", timesteps=3, seed=0)[0]
    assert not np.array_equal(np.asarray(a), np.asarray(b))


def test_superres_result_agrees_with_the_low_res_image_it_enlarges(tiny_pipe):
    """Box-downsampled, the 64 px result is the 32 px image it enlarged (back-projection), for super-res from
    an image and for text to image (the base stage's image); without it, the tokens' decode alone."""
    import torch.nn.functional as F

    from muse.render import match_low_res

    def gap(big: Image.Image, small: torch.Tensor) -> float:
        return float((F.avg_pool2d(pil_to_tensor([big]), 2) - small).abs().mean())

    low = _picture((32, 32))
    matched = tiny_pipe.superres(low, "a cat", timesteps=3, seed=0)[0]
    assert gap(matched, pil_to_tensor([low])) < 0.004  # about 1/255: the 8-bit rounding
    ids = tiny_pipe.superres(low, "a cat", timesteps=3, seed=0, output_type="ids")
    with torch.inference_mode():
        decoded = tiny_pipe.renderer.decode(ids)
    assert np.array_equal(np.asarray(matched), np.asarray(tensor_to_pil(match_low_res(decoded, pil_to_tensor([low])))[0]))
    tiny_pipe.match_low_res = False
    try:
        raw = tiny_pipe.superres(low, "a cat", timesteps=3, seed=0)[0]
    finally:
        tiny_pipe.match_low_res = True
    assert np.array_equal(np.asarray(raw), np.asarray(tensor_to_pil(decoded)[0]))
    assert gap(raw, pil_to_tensor([low])) > 10 * gap(matched, pil_to_tensor([low]))
    steps = list(tiny_pipe.stream("a cat", timesteps=3, seed=0))
    with torch.inference_mode():
        base = tiny_pipe.renderer.decode(steps[2].ids)  # the base stage's final image, full decoder
    assert gap(steps[-1].canvas[0], base) < 0.004


@pytest.mark.parametrize("bad, error", [
    (dict(timesteps=0), ValueError), (dict(timesteps=10_000), ValueError), (dict(cond_scale=float("nan")), ValueError),
    (dict(temperature=-1.0), ValueError), (dict(topk_filter_thres=1.5), ValueError), (dict(schedule="zigzag"), ValueError),
    (dict(num_images=99), ValueError), (dict(seed=-1), ValueError), (dict(use_critic="yes"), ValueError),
    (dict(guidance=2), TypeError),
])
def test_bad_settings_are_clear_errors(tiny_pipe, bad, error):
    with pytest.raises(error):
        tiny_pipe("a cat", **bad)


def test_checked_settings_are_used_as_they_are(tiny_pipe, monkeypatch):
    settings = tiny_pipe.settings(timesteps=3, seed=5, cond_scale=2.0, superres=False)
    by_keywords = tiny_pipe(["a cat"], output_type="ids", timesteps=3, seed=5, cond_scale=2.0, superres=False)
    # A checked GenerationSettings is not checked again: the request builds no new one.
    monkeypatch.setattr("muse.pipeline.GenerationSettings.__post_init__", lambda self: pytest.fail("checked again"))
    assert torch.equal(tiny_pipe(["a cat"], output_type="ids", settings=settings), by_keywords)
    assert [s.step for s in tiny_pipe.stream("a cat", settings=settings, previews=False)] == [1, 2, 3]
    with pytest.raises(TypeError, match="not both"):
        tiny_pipe("a cat", settings=settings, timesteps=4)
    with pytest.raises(TypeError, match="settings= takes the GenerationSettings"):
        list(tiny_pipe.stream("a cat", settings={"timesteps": 3}))


def test_bad_prompts(tiny_pipe):
    with pytest.raises(TypeError):
        tiny_pipe(123)
    with pytest.raises(TypeError):
        tiny_pipe([])
    assert tiny_pipe("", timesteps=2, seed=0)[0].size == (64, 64)  # empty text = unconditional


def test_load_pipeline_from_folder_matches(tiny_pipe, tiny_weights):
    loaded = load_pipeline(tiny_weights, device="cpu", dtype=None)  # as stored: float32, like tiny_pipe
    a = tiny_pipe("a cat", seed=9)[0]
    b = loaded("a cat", seed=9)[0]
    assert np.array_equal(np.asarray(a), np.asarray(b))
    assert loaded.config.defaults == {"timesteps": 4}


def test_load_pipeline_picks_the_inference_dtype(tiny_weights, tmp_path, monkeypatch):
    auto = load_pipeline(tiny_weights, device="cpu")
    assert auto.base_model.token_emb.weight.dtype == inference_dtype("cpu")
    assert auto.vq.decoder[0].weight.dtype == torch.float32  # the tokenizer stays float32
    first, again = auto("a cat", seed=9)[0], auto("a cat", seed=9)[0]
    assert np.array_equal(np.asarray(first), np.asarray(again))
    bf16 = load_pipeline(tiny_weights, device="cpu", dtype=torch.bfloat16)
    assert bf16("a cat", seed=9)[0].size == (64, 64)
    # Saving a reduced-precision pipeline still stores float32.
    bf16.base_model.save_pretrained(tmp_path / "base")
    assert MaskedTransformer.from_pretrained(tmp_path / "base").token_emb.weight.dtype == torch.float32
    monkeypatch.setenv("MUSE_DTYPE", "float32")
    assert inference_dtype("cpu") == torch.float32
    monkeypatch.setenv("MUSE_DTYPE", "float16")
    with pytest.raises(ValueError, match="MUSE_DTYPE"):
        inference_dtype("cpu")


def test_load_pipeline_errors(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(WeightsError, match="not a muse pipeline"):
        load_pipeline(tmp_path)
    with pytest.raises(WeightsError):
        load_pipeline("nobody/missing-model")


def test_previews_use_the_preview_decoder_and_the_final_image_the_full_one(tiny_pipe, tiny_weights, tmp_path,
                                                                           monkeypatch):
    import shutil

    from muse.preview import PreviewConfig, PreviewDecoder

    folder = Path(shutil.copytree(tiny_weights, tmp_path / "w"))
    vq = tiny_pipe.vq.config
    PreviewDecoder(PreviewConfig(code_dim=vq.code_dim, downsample=vq.downsample, hidden=8)).save_pretrained(
        folder / "preview")
    pipe = load_pipeline(folder, device="cpu", dtype=None)
    assert pipe.preview_decoder is not None
    calls = []
    full = pipe.vq.decode
    monkeypatch.setattr(pipe.vq, "decode", lambda ids: calls.append(ids.shape) or full(ids))
    steps = list(pipe.stream("a cat", timesteps=3, seed=4))
    # previews: the preview decoder; the full one for the final image and for the base stage's image, which
    # the super-res result is matched to
    assert len(calls) == 2 and all(s.canvas for s in steps)
    plain = tiny_pipe("a cat", timesteps=3, seed=4)[0]  # same weights, no preview decoder
    assert np.array_equal(np.asarray(steps[-1].canvas[0]), np.asarray(plain))  # the final image is exact
    pipe.fast_previews = False
    calls.clear()
    list(pipe.stream("a cat", timesteps=3, seed=4))
    # every step through the full decoder once: the base stage's last step is also what super-res is matched to
    assert len(calls) == 6


def test_a_preview_decoder_that_does_not_fit_is_refused(tiny_weights, tmp_path):
    import shutil

    from muse.preview import PreviewConfig, PreviewDecoder

    folder = Path(shutil.copytree(tiny_weights, tmp_path / "w"))
    PreviewDecoder(PreviewConfig(code_dim=5, downsample=4, hidden=8)).save_pretrained(folder / "preview")
    with pytest.raises(WeightsError, match="preview decoder"):
        load_pipeline(folder, device="cpu")


def _broken_backend(graph, example_inputs):
    raise RuntimeError("no C++ compiler here")


def test_compiled_pipeline_matches_eager_and_falls_back_when_it_cannot_compile(text_encoder, caplog):
    """`pipe.compile()` changes no image; a backend that fails leaves a warning and the eager model.
    (The "eager" backend traces with dynamo without generating code: the inductor compile itself
    takes a minute on this CPU.)"""
    want = [np.asarray(im) for im in make_tiny_pipeline(text_encoder)(["red heart", "cat"], seed=3, timesteps=4)]
    torch.compiler.reset()
    traced = make_tiny_pipeline(text_encoder).compile(backend="eager")
    assert is_compiled(traced.base_model) and is_compiled(traced.superres_critic)
    for _ in range(2):  # the second request runs the traced graphs
        got = traced(["red heart", "cat"], seed=3, timesteps=4)
        assert all(np.array_equal(np.asarray(g), w) for g, w in zip(got, want))

    # A second compiled pipeline in the same process shares the forward's code, and so dynamo's
    # cache for it: past its default limit this one would run eagerly, its backend never called.
    broken = make_tiny_pipeline(text_encoder).compile(backend=_broken_backend)
    with caplog.at_level(logging.WARNING, logger="muse.compiled"):
        got = broken(["red heart", "cat"], seed=3, timesteps=4)
    assert all(np.array_equal(np.asarray(g), w) for g, w in zip(got, want))
    assert "torch.compile failed, running eagerly" in caplog.text and "no C++ compiler" in caplog.text
    with pytest.raises(ValueError, match="expected 64 tokens"):  # the model's own errors still reach the caller
        broken.base_model(torch.zeros(1, 5, dtype=torch.long), None)
    torch.compiler.reset()
