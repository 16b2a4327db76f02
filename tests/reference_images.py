"""Pixel-exact reference images of a tiny fixed-seed pipeline, for the refactoring guard test.

    python -m tests.reference_images    # rewrite tests/reference/*.png (only when behaviour is meant to change)

The pipeline is built from a fixed seed (not the shipped weights, which other work retrains), and each
case uses only the public API, so the images pin behaviour, not structure.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable
from unittest import mock

import numpy as np
import torch
from PIL import Image

from muse.pipeline import MusePipeline

REFERENCE_DIR = Path(__file__).resolve().parent / "reference"
SEED = 7


def _photo(size: int = 48) -> Image.Image:
    """A fixed, structured test picture: a gradient with a dark disc."""
    y, x = np.mgrid[0:size, 0:size]
    rgb = np.stack([x * 255 // size, y * 255 // size, np.full_like(x, 120)], -1).astype(np.uint8)
    rgb[(x - size // 2) ** 2 + (y - size // 3) ** 2 < (size // 5) ** 2] = (20, 30, 40)
    return Image.fromarray(rgb)


def _mask(size: int = 48) -> Image.Image:
    m = np.zeros((size, size), np.uint8)
    m[size // 2:, size // 4: 3 * size // 4] = 255
    return Image.fromarray(m, mode="L")


def _streamed(pipe: MusePipeline, **kwargs) -> list[Image.Image]:
    """The final images plus the canvas and prediction of a middle step of each stage."""
    out: list[Image.Image] = []
    for step in pipe.stream(**kwargs):
        if step.step == 2:
            out += step.canvas + step.prediction
        if step.is_final:
            out += step.canvas
    return out


CASES: dict[str, Callable[[MusePipeline], list[Image.Image]]] = {
    "text_to_image": lambda p: _streamed(p, prompt=["a red heart", "a cat"], seed=SEED, timesteps=4,
                                         use_critic=False),
    "critic": lambda p: p(["a red heart"], seed=SEED, timesteps=4, use_critic=True, critic_noise_scale=1.0,
                          num_images=2),
    "negative_prompt": lambda p: p("a red heart", negative_prompt="blurry", seed=SEED, timesteps=4,
                                   use_critic=False, cond_scale=4.0),
    "inpaint": lambda p: p.inpaint(_photo(), _mask(), "a cat", seed=SEED, timesteps=4, use_critic=False),
    "superres": lambda p: p.superres(_photo(), "a cat", seed=SEED, timesteps=4, use_critic=True),
}


def reference_images(pipe: MusePipeline) -> dict[str, list[Image.Image]]:
    """Every case's images, in a fixed order, on one torch thread: float sums split over another number of
    threads can round a pixel the other way, and other tests (the benchmarks' smoke tests) set the count.
    Previews decode in float32 here: on a CPU that computes bfloat16 natively (AVX512-BF16, AMX) the
    renderer decodes them in bfloat16 (`muse.render.Renderer.decode`), and the references pin the float32
    path every CPU has."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.inference_mode(), mock.patch("muse.render.native_bf16", lambda device: False):
            return {name: case(pipe) for name, case in CASES.items()}
    finally:
        torch.set_num_threads(threads)


def tile(images: list[Image.Image]) -> Image.Image:
    """Images side by side (all are squares; heights may differ), on black."""
    width, height = sum(im.width for im in images), max(im.height for im in images)
    sheet, x = Image.new("RGB", (width, height)), 0
    for im in images:
        sheet.paste(im.convert("RGB"), (x, 0))
        x += im.width
    return sheet


def main() -> None:
    from muse.text import TextEncoder

    from .conftest import make_tiny_pipeline

    REFERENCE_DIR.mkdir(exist_ok=True)
    pipe = make_tiny_pipeline(TextEncoder(), seed=SEED)
    for name, images in reference_images(pipe).items():
        tile(images).save(REFERENCE_DIR / f"{name}.png")
        print(f"wrote {REFERENCE_DIR / name}.png ({len(images)} images)")


if __name__ == "__main__":
    main()
