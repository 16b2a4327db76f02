"""Pictures the tests feed the playground and the pipelines."""

from __future__ import annotations

import numpy as np
from PIL import Image


def gradient(size: tuple[int, int] = (96, 64)) -> Image.Image:
    """An RGB picture (width, height) that differs at every pixel: red across, green down."""
    x = np.linspace(0, 255, size[0], dtype=np.float32)
    y = np.linspace(0, 255, size[1], dtype=np.float32)
    rgb = np.stack(np.broadcast_arrays(x[None, :], y[:, None], 128 + 0 * x[None, :]), -1)
    return Image.fromarray(rgb.astype(np.uint8))
