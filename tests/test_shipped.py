"""The shipped model in weights/, end to end (offline, CPU)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from muse import load_pipeline

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def shipped():
    return load_pipeline(device="cpu")


def test_shipped_weights_are_safetensors_and_small():
    files = [p for p in (ROOT / "weights").rglob("*") if p.is_file()]
    assert (ROOT / "weights" / "pipeline.json").is_file() and (ROOT / "weights" / "README.md").is_file()
    assert not [p for p in files if p.suffix in (".bin", ".pt", ".pth", ".ckpt", ".pkl")]
    assert sum(p.stat().st_size for p in files) < 100 * 2**20
    for part in ("vq", "base", "superres", "base_critic", "superres_critic", "preview"):
        assert json.loads((ROOT / "weights" / part / "config.json").read_text())


def test_shipped_model_makes_a_64px_image(shipped):
    image = shipped("red heart", seed=0)[0]
    assert image.size == (64, 64)
    arr = np.asarray(image).astype(float)
    assert arr.std() > 10  # not a flat or blank image
    again = shipped("red heart", seed=0)[0]
    assert np.array_equal(np.asarray(again), np.asarray(image))


def test_shipped_model_follows_the_prompt(shipped):
    """Different prompts with the same seed give clearly different images."""
    a = np.asarray(shipped("red heart", seed=0)[0]).astype(float)
    b = np.asarray(shipped("grinning face", seed=0)[0]).astype(float)
    assert np.abs(a - b).mean() > 10


def test_shipped_previews_look_like_the_full_decode(shipped):
    """The streamed previews come from the tiny preview decoder; they must show what the full decoder
    would (the model card measures 26.5 dB over the whole dataset)."""
    import torch

    last = list(shipped.stream("grinning face", seed=1))[-1]
    ids = last.ids.clamp(0, shipped.vq.codebook_size - 1)
    with torch.inference_mode():
        full, fast = shipped.vq.decode(ids), shipped.preview_decoder.decode(shipped.vq, ids)
    psnr = -10 * torch.log10(((full - fast) ** 2).mean())
    assert psnr > 22, psnr


def test_cli_generate_writes_png_and_gif(tmp_path):
    out, gif = tmp_path / "out.png", tmp_path / "steps.gif"
    proc = subprocess.run([sys.executable, "-m", "muse", "generate", "rocket", "--seed", "0", "-o", str(out),
                           "--gif", str(gif), "--timesteps", "6"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert Image.open(out).size == (64, 64)
    with Image.open(gif) as anim:
        assert anim.n_frames >= 12  # every step of both stages


def test_cli_reports_bad_input_without_traceback(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "muse", "generate", "rocket", "--timesteps", "0", "-o",
                           str(tmp_path / "x.png")], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and "timesteps" in proc.stderr and "Traceback" not in proc.stderr
