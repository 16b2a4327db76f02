"""The refactoring guard: a tiny fixed-seed pipeline gives, pixel for pixel, the images saved in
tests/reference/ (text to image with its previews, the critic, a negative prompt, inpainting, super-res)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from .conftest import make_tiny_pipeline
from .reference_images import CASES, REFERENCE_DIR, SEED, reference_images, tile


@pytest.fixture(scope="module")
def produced(text_encoder):
    return reference_images(make_tiny_pipeline(text_encoder, seed=SEED))


@pytest.mark.parametrize("name", list(CASES))
def test_same_images_as_before_the_redesign(produced, name):
    expected = np.asarray(Image.open(REFERENCE_DIR / f"{name}.png").convert("RGB"))
    got = np.asarray(tile(produced[name]))
    assert got.shape == expected.shape
    differ = (got != expected).any(-1)
    assert not differ.any(), f"{name}: {int(differ.sum())} pixels differ from tests/reference/{name}.png"
