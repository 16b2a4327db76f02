"""aMUSEd through muse: a tiny random aMUSEd in diffusers layout (diffusers' fast-test sizes, a CLIP
tokenizer made offline) is saved, loaded through `muse.load_pipeline`, and run with a fixed seed; under
aMUSEd's sampler rules its token ids and images equal those of diffusers' own aMUSEd pipelines exactly.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import diffusers  # the [amused] extra: `make setup-dev` installs it
from muse import WeightsError, load_pipeline
from muse.amused import AmusedPipeline, is_amused_source, make_tiny_amused
from muse.amused.load import AMUSED_DEFAULTS
from muse import describe
from muse.pipeline import DecodeStep

PROMPT = "A painting of a squirrel eating a burger"


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory) -> Path:
    return make_tiny_amused(tmp_path_factory.mktemp("tiny_amused"))


@pytest.fixture(scope="module")
def pipe(tiny_folder) -> AmusedPipeline:
    return load_pipeline(tiny_folder)


def reference(folder: Path, cls=diffusers.AmusedPipeline, **scheduler_config):
    """diffusers' own pipeline on the same folder (a fresh scheduler each time: the inpainting pipeline
    rewrites its scheduler's config)."""
    ref = cls.from_pretrained(str(folder), use_safetensors=True)
    if scheduler_config:
        ref.scheduler.register_to_config(**scheduler_config)
    ref.set_progress_bar_config(disable=True)
    return ref


def run_reference(ref, prompt, seed: int, **kwargs):
    """(ids (B, h, w), images as uint8 arrays) from diffusers with torch.Generator().manual_seed(seed)."""
    ids = ref(prompt, generator=torch.Generator().manual_seed(seed), output_type="latent", **kwargs).images
    images = ref(prompt, generator=torch.Generator().manual_seed(seed), output_type="pil", **kwargs).images
    return ids, [np.asarray(im) for im in images]


def run_ours(pipe, prompt, seed: int, **kwargs):
    ids = pipe(prompt, output_type="ids", seed=seed, **kwargs)
    images = pipe(prompt, seed=seed, **kwargs)
    return ids, [np.asarray(im) for im in images]


def assert_same(ours, theirs) -> None:
    assert torch.equal(ours[0], theirs[0]), (ours[0], theirs[0])
    assert len(ours[1]) == len(theirs[1])
    for a, b in zip(ours[1], theirs[1]):
        assert a.shape == b.shape and np.array_equal(a, b)


# ----- loading ----------------------------------------------------------------------------


def test_load_pipeline_serves_amused_folders(tiny_folder, pipe):
    assert is_amused_source(tiny_folder) and is_amused_source("amused/amused-256")
    assert not is_amused_source(None)
    assert isinstance(pipe, AmusedPipeline)
    assert pipe.stage_names() == ["base"] and pipe.output_size() == 8 and pipe.token_counts() == {"base": 64}
    assert not pipe.uses_critic()
    settings = pipe.settings()
    assert (settings.timesteps, settings.cond_scale, settings.choice_temperature) == (12, 10.0, 2.0)
    summary = describe(tiny_folder)  # what the playground reads before loading
    assert summary.output_size() == 8 and summary.config.defaults["schedule"] == "cosine"
    assert summary.config.defaults.items() >= AMUSED_DEFAULTS.items()


def test_offline_hub_id_says_how_to_fix(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(WeightsError) as err:
        load_pipeline("amused/amused-256")
    message = str(err.value)
    assert "HF_HUB_OFFLINE" in message and "hf download amused/amused-256" in message
    assert "OpenRAIL++-M" in message and "--local-dir" in message


def copy_of(folder: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(folder, tmp_path / "copy"))


def test_pickles_are_never_loaded(tiny_folder, tmp_path):
    folder = copy_of(tiny_folder, tmp_path)
    weights = folder / "transformer" / "diffusion_pytorch_model.safetensors"
    weights.rename(weights.with_suffix(".bin"))
    with pytest.raises(WeightsError, match="pickle formats are never loaded"):
        load_pipeline(folder)
    # a pickle under the safetensors name is refused before any library reads it
    torch.save({"x": torch.zeros(1)}, weights)
    with pytest.raises(WeightsError, match="pickle"):
        load_pipeline(folder)


def test_configs_are_checked(tiny_folder, tmp_path):
    folder = copy_of(tiny_folder, tmp_path)
    config_file = folder / "transformer" / "config.json"
    config = json.loads(config_file.read_text())
    config_file.write_text(json.dumps({**config, "codebook_size": 16}))
    with pytest.raises(WeightsError, match="codebook_size 16 != vqvae num_vq_embeddings 8"):
        load_pipeline(folder)
    config_file.write_text(json.dumps({**config, "hidden_size": 16}))  # fits the others, not the weights
    with pytest.raises(WeightsError, match="do not match its config"):
        load_pipeline(folder)
    index = folder / "model_index.json"
    index.write_text(json.dumps({**json.loads(index.read_text()), "_class_name": "StableDiffusionPipeline"}))
    with pytest.raises(WeightsError, match="not an aMUSEd pipeline"):
        load_pipeline(folder)


def test_fp16_variant_files(tiny_folder, tmp_path, pipe):
    folder = copy_of(tiny_folder, tmp_path)
    from safetensors.torch import load_file, save_file

    for part, stem in (("vqvae", "diffusion_pytorch_model"), ("transformer", "diffusion_pytorch_model"),
                       ("text_encoder", "model")):
        file = folder / part / f"{stem}.safetensors"
        save_file({k: v.half() for k, v in load_file(file).items()}, folder / part / f"{stem}.fp16.safetensors")
    half = AmusedPipeline.from_pretrained(folder, variant="fp16")
    assert half.transformer.dtype == torch.float32  # fp16 weights, float32 compute on a CPU
    for part, stem in (("vqvae", "diffusion_pytorch_model"), ("transformer", "diffusion_pytorch_model"),
                       ("text_encoder", "model")):
        (folder / part / f"{stem}.safetensors").unlink()
    only_half = load_pipeline(folder)  # the fp16 files alone are found
    ids = only_half(PROMPT, output_type="ids", seed=3, timesteps=4)
    assert torch.equal(ids, half(PROMPT, output_type="ids", seed=3, timesteps=4))
    with pytest.raises(WeightsError, match=r"missing diffusion_pytorch_model\.fp16\.safetensors"):
        AmusedPipeline.from_pretrained(tiny_folder, variant="fp16")


# ----- exactness against diffusers ----------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1])
def test_text_to_image_with_guidance_matches_diffusers(tiny_folder, pipe, seed):
    assert_same(run_ours(pipe, PROMPT, seed), run_reference(reference(tiny_folder), PROMPT, seed))


def test_text_to_image_without_guidance_matches_diffusers(tiny_folder, pipe):
    ours = run_ours(pipe, PROMPT, 5, cond_scale=1.0, timesteps=7)
    assert_same(ours, run_reference(reference(tiny_folder), PROMPT, 5, guidance_scale=1.0, num_inference_steps=7))


@pytest.mark.parametrize("prompts,num_images", [([PROMPT, "the cat and the hat"], 1), (PROMPT, 3),
                                                ([PROMPT, "an owl"], 2)])
def test_batches_match_diffusers(tiny_folder, pipe, prompts, num_images):
    ours = run_ours(pipe, prompts, 11, num_images=num_images, timesteps=6)
    theirs = run_reference(reference(tiny_folder), prompts, 11, num_images_per_prompt=num_images, num_inference_steps=6)
    assert ours[0].shape[0] == (len(prompts) if isinstance(prompts, list) else 1) * num_images
    assert_same(ours, theirs)


def test_negative_prompt_schedule_choice_temperature_and_micro_conditions_match_diffusers(tiny_folder, pipe):
    ours = run_ours(pipe, PROMPT, 2, negative_prompt="blurry", schedule="linear", choice_temperature=3.0,
                    cond_scale=4.0, timesteps=9, aesthetic_score=5, crop_coord=(1, 2))
    theirs = run_reference(reference(tiny_folder, masking_schedule="linear"), PROMPT, 2, negative_prompt="blurry",
                           temperature=(3, 0), guidance_scale=4.0, num_inference_steps=9,
                           micro_conditioning_aesthetic_score=5, micro_conditioning_crop_coord=(1, 2))
    assert_same(ours, theirs)


def inpaint_inputs() -> tuple[Image.Image, Image.Image]:
    g = torch.Generator().manual_seed(0)
    image = Image.fromarray((torch.rand(8, 8, 3, generator=g) * 255).to(torch.uint8).numpy(), "RGB")
    mask = np.zeros((8, 8), np.uint8)
    mask[2:6, 1:7] = 255
    return image, Image.fromarray(mask, "L")


@pytest.mark.parametrize("num_images", [1, 2])
def test_inpainting_matches_diffusers(tiny_folder, pipe, num_images):
    image, mask = inpaint_inputs()
    ref = reference(tiny_folder, cls=diffusers.AmusedInpaintPipeline)
    kwargs = dict(num_inference_steps=8, num_images_per_prompt=num_images)
    theirs_ids = ref(PROMPT, image=image, mask_image=mask, generator=torch.Generator().manual_seed(4),
                     output_type="latent", **kwargs).images
    theirs = ref(PROMPT, image=image, mask_image=mask, generator=torch.Generator().manual_seed(4), **kwargs).images
    ours_ids = pipe.inpaint(image, mask, PROMPT, output_type="ids", seed=4, timesteps=8, num_images=num_images)
    ours = pipe.inpaint(image, mask, PROMPT, seed=4, timesteps=8, num_images=num_images)
    assert torch.equal(ours_ids, theirs_ids)
    inside = np.asarray(mask)[..., None] >= 128
    for a, b in zip(ours, theirs):  # inside the mask diffusers' pixels; outside, ours returns the original
        assert np.array_equal(np.asarray(a), np.where(inside, np.asarray(b), np.asarray(image)))


# ----- everything else of ours --------------------------------------------------------------


def test_stream_gives_decode_steps_with_cheap_previews(pipe, monkeypatch):
    calls = []
    decode = pipe.vq.decode
    monkeypatch.setattr(pipe.vq, "decode", lambda ids: calls.append(ids.shape) or decode(ids))
    steps = list(pipe.stream(PROMPT, seed=0, timesteps=5))
    assert [s.step for s in steps] == [1, 2, 3, 4, 5] and all(isinstance(s, DecodeStep) for s in steps)
    assert all(s.canvas and s.prediction and s.canvas[0].size == (8, 8) for s in steps)
    assert steps[-1].is_final and not steps[-1].masked.any()
    assert [s.num_fixed for s in steps] == sorted(s.num_fixed for s in steps) and steps[-1].num_fixed == 64
    # previews are palette lookups; only the final image went through the VQ decoder (plus the
    # palette's one-time fit, done before this test when the palette was already fitted)
    assert len(calls) <= 2 and calls[-1][0] == 1
    assert torch.equal(steps[-1].ids, pipe(PROMPT, output_type="ids", seed=0, timesteps=5))
    assert np.array_equal(np.asarray(steps[-1].canvas[0]), np.asarray(pipe(PROMPT, seed=0, timesteps=5)[0]))


def test_inpaint_stream_keeps_the_known_tokens(pipe):
    image, mask = inpaint_inputs()
    steps = list(pipe.stream_inpaint(image, mask, PROMPT, seed=1, timesteps=4))
    region = steps[0].region[0]
    assert int(region.sum()) == 24 and steps[-1].is_final
    known = pipe.vq.encode(torch.from_numpy(np.array(image)).permute(2, 0, 1)[None].float() / 255)
    for s in steps:
        assert torch.equal(s.ids[0][~region], known[0][~region])


def test_seeds_temperature_and_cancel(pipe):
    a = pipe(PROMPT, output_type="ids", seed=7, timesteps=4)
    assert torch.equal(a, pipe(PROMPT, output_type="ids", seed=7, timesteps=4))
    assert not torch.equal(a, pipe(PROMPT, output_type="ids", seed=8, timesteps=4))
    greedy = [pipe(PROMPT, output_type="ids", seed=s, timesteps=1, temperature=0.0) for s in (1, 2)]
    assert torch.equal(*greedy)  # one step at temperature 0: the argmax everywhere, whatever the seed
    stream = pipe.stream(PROMPT, seed=7, timesteps=4)
    first = next(stream)
    stream.close()  # cancel: the playground stops iterating; nothing runs after
    assert first.step == 1 and int(first.masked.sum()) > 0
    assert torch.equal(a, pipe(PROMPT, output_type="ids", seed=7, timesteps=4))


def test_our_default_sampler_runs_on_amused(pipe):
    kwargs = dict(sampler="muse", seed=3, timesteps=6, temperature=1.0, topk_filter_thres=0.5, choice_temperature=4.5,
                  schedule="arccos")
    ids = pipe(PROMPT, output_type="ids", **kwargs)
    assert ids.shape == (1, 8, 8) and int(ids.min()) >= 0 and int(ids.max()) < 8
    assert torch.equal(ids, pipe(PROMPT, output_type="ids", **kwargs))
    steps = list(pipe.stream(PROMPT, **kwargs))
    assert steps[-1].is_final and torch.equal(steps[-1].ids, ids)
    assert not torch.equal(ids, pipe(PROMPT, output_type="ids", seed=3, timesteps=6))  # aMUSEd's rules differ


def test_fading_guidance_runs_on_amused_and_constant_is_amuseds_own(pipe):
    """aMUSEd's requests take the guidance schedule too; "constant" is what diffusers computes."""
    kwargs = dict(seed=3, timesteps=6, cond_scale=6.0)
    constant = pipe(PROMPT, output_type="ids", **kwargs)
    assert torch.equal(constant, pipe(PROMPT, output_type="ids", guidance_schedule="constant", **kwargs))
    fading = pipe(PROMPT, output_type="ids", guidance_schedule="fading", **kwargs)
    assert fading.shape == constant.shape and not torch.equal(fading, constant)


def test_options_are_checked(pipe):
    with pytest.raises(ValueError, match="sampler must be one of"):
        pipe(PROMPT, sampler="ddim", output_type="ids")
    with pytest.raises(ValueError, match="aesthetic_score"):
        pipe(PROMPT, aesthetic_score=11, output_type="ids")
    with pytest.raises(ValueError, match="crop_coord"):
        pipe(PROMPT, crop_coord=(1,), output_type="ids")
    with pytest.raises(TypeError, match="unknown setting"):
        pipe(PROMPT, guidance=3, output_type="ids")


def test_checked_settings_and_options_are_used_as_they_are(pipe):
    kwargs = dict(seed=3, timesteps=4, cond_scale=2.0)
    options = pipe.options(sampler="muse", aesthetic_score=5.0)
    ids = pipe(PROMPT, output_type="ids", sampler="muse", aesthetic_score=5.0, **kwargs)
    assert torch.equal(pipe(PROMPT, output_type="ids", settings=pipe.settings(**kwargs), options=options), ids)
    assert torch.equal(list(pipe.stream(PROMPT, options=options, **kwargs))[-1].ids, ids)
    with pytest.raises(TypeError, match="not both"):
        pipe(PROMPT, output_type="ids", options=options, sampler="amused")
    with pytest.raises(TypeError, match="options= takes the AmusedOptions"):
        pipe(PROMPT, output_type="ids", options={"sampler": "muse"})


# The published configs' sizes (amused/amused-256 and amused/amused-512, transformer/ and vqvae/; the
# VQ is the same in both). Only configs: their weights (2.4 GB) are not fetched in tests.
PUBLISHED_TRANSFORMER = {"_class_name": "UVit2DModel", "attention_dropout": 0.0, "block_num_heads": 12,
                         "block_out_channels": 768, "codebook_size": 8192, "cond_embed_dim": 768, "downsample": False,
                         "encoder_hidden_size": 768, "hidden_dropout": 0.0, "hidden_size": 1024, "in_channels": 768,
                         "intermediate_size": 2816, "layer_norm_eps": 1e-06, "ln_elementwise_affine": True,
                         "micro_cond_embed_dim": 1280, "micro_cond_encode_dim": 256, "num_attention_heads": 16,
                         "num_hidden_layers": 22, "num_res_blocks": 3, "sample_size": 16, "upsample": False,
                         "use_bias": False, "vocab_size": 8256}
PUBLISHED_VQ = {"_class_name": "VQModel", "act_fn": "silu", "block_out_channels": [128, 256, 256, 512, 768],
                "down_block_types": ["DownEncoderBlock2D"] * 5, "in_channels": 3, "latent_channels": 64,
                "layers_per_block": 2, "lookup_from_codebook": True, "mid_block_add_attention": False,
                "norm_num_groups": 32, "norm_type": "group", "num_vq_embeddings": 8192, "out_channels": 3,
                "sample_size": 32, "scaling_factor": 0.18215, "up_block_types": ["UpDecoderBlock2D"] * 5,
                "vq_embed_dim": None, "force_upcast": True}


@pytest.mark.parametrize("size,grid,downsample", [(256, 16, False), (512, 32, True)])
def test_published_configs_pass_the_checks(tiny_folder, tmp_path, size, grid, downsample):
    from safetensors.torch import save_file

    folder = copy_of(tiny_folder, tmp_path)
    (folder / "transformer" / "config.json").write_text(json.dumps(
        {**PUBLISHED_TRANSFORMER, "sample_size": grid, "downsample": downsample, "upsample": downsample}))
    (folder / "vqvae" / "config.json").write_text(json.dumps(PUBLISHED_VQ))
    text = json.loads((folder / "text_encoder" / "config.json").read_text())
    (folder / "text_encoder" / "config.json").write_text(json.dumps({**text, "hidden_size": 768, "projection_dim": 768}))
    (folder / "scheduler" / "scheduler_config.json").write_text(json.dumps(
        {"_class_name": "AmusedScheduler", "mask_token_id": 8255, "masking_schedule": "cosine"}))
    summary = describe(folder)  # configs only: these weight files are the tiny model's
    assert summary.output_size() == size and summary.token_counts() == {"base": grid * grid}
    save_file({"x": torch.zeros(1)}, folder / "vqvae" / "diffusion_pytorch_model.safetensors")
    with pytest.raises(WeightsError, match="do not match its config"):
        load_pipeline(folder)


def test_legacy_clip_position_ids_are_dropped(tiny_folder, tmp_path):
    from safetensors.torch import load_file, save_file

    folder = copy_of(tiny_folder, tmp_path)
    file = folder / "text_encoder" / "model.safetensors"
    save_file({**load_file(file), "text_model.embeddings.position_ids": torch.arange(77)[None]}, file)
    assert torch.equal(load_pipeline(folder)(PROMPT, output_type="ids", seed=0, timesteps=3),
                       load_pipeline(tiny_folder)(PROMPT, output_type="ids", seed=0, timesteps=3))


def test_micro_conditioning_defaults_and_text_limits(pipe):
    options = pipe.options()
    assert (options.sampler, options.aesthetic_score, options.crop_coord, options.micro_size) == ("amused", 6.0, (0, 0), None)
    default = pipe(PROMPT, output_type="ids", seed=0, timesteps=4)
    assert torch.equal(default, pipe(PROMPT, output_type="ids", seed=0, timesteps=4, micro_size=(8, 8)))
    assert not torch.equal(default, pipe(PROMPT, output_type="ids", seed=0, timesteps=4, micro_size=(512, 512),
                                         aesthetic_score=2))
    assert pipe.text_encoder.max_length == 77 and not pipe.text_encoder.truncates(PROMPT)
    assert pipe.text_encoder.truncates("word " * 100)  # the playground's truncation note reads this


@pytest.mark.parametrize("schedule", ["cosine", "linear"])
@pytest.mark.parametrize("seq_len,steps,region", [(256, 12, 256), (1024, 16, 1024), (64, 7, 23), (256, 30, 100)])
def test_mask_counts_are_amused_float32_counts(schedule, seq_len, steps, region):
    """Our count rule against AmusedScheduler.step itself, step after step (inpainting: a region < N)."""
    from muse.sampler_rules import amused_mask_len

    scheduler = diffusers.AmusedScheduler(mask_token_id=8, masking_schedule=schedule)
    scheduler.set_timesteps(steps)
    g = torch.Generator().manual_seed(0)
    sample = torch.randint(0, 8, (1, seq_len), generator=g)
    sample[:, :region] = 8
    start = torch.tensor([[region]]) / seq_len
    for step, timestep in enumerate(scheduler.timesteps[:-1]):
        masked = sample == 8
        ours = amused_mask_len(schedule, step, steps, seq_len, start, masked)
        logits = torch.randn(1, seq_len, 8, generator=g)
        # as the pipelines pass it: mask.sum() / numel when inpainting, 1.0 for text to image
        ratio = torch.tensor(region) / seq_len if region < seq_len else 1.0
        sample = scheduler.step(logits, timestep, sample, starting_mask_ratio=ratio, generator=g).prev_sample
        assert int((sample == 8).sum()) == int(ours)


def test_compile_keeps_the_ids(tiny_folder):
    fresh = load_pipeline(tiny_folder)
    eager = fresh(PROMPT, output_type="ids", seed=0, timesteps=3)
    fresh.compile(backend="eager")  # dynamo's tracing without inductor: the compiled path, cheaply
    assert torch.equal(eager, fresh(PROMPT, output_type="ids", seed=0, timesteps=3))


def test_benchmark_runs_on_the_tiny_model(tmp_path, capsys):
    from benchmarks.amused import main

    out = tmp_path / "amused.json"
    assert main(["--only", "tiny", "--runs", "1", "--grid", "4", "--timesteps", "2", "--out", str(out)]) == 0
    results = json.loads(out.read_text())
    assert results["tiny"]["same_ids_as_diffusers"] is True and results["tiny"]["tokens"] == 16
    assert "ours stream, previews" in capsys.readouterr().out


def test_amuseds_own_rules_refuse_another_order_and_the_muse_rules_take_it(pipe):
    with pytest.raises(ValueError, match="aMUSEd's own sampler rules rank tokens by confidence; order='halton' "
                                         "needs sampler='muse'"):
        pipe("a cat", order="halton", seed=0)
    with pytest.raises(ValueError, match="order='critic' needs a token critic"):
        pipe("a cat", order="critic", sampler="muse", seed=0)
    a = pipe("a cat", order="halton", sampler="muse", seed=0, output_type="ids")
    b = pipe("a cat", order="confidence", sampler="muse", seed=0, output_type="ids")
    assert a.shape == b.shape and not torch.equal(a, b)
