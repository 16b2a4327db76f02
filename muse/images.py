"""Image and mask conversion at the edges of the library: PIL in, tensors inside, PIL out."""

from __future__ import annotations

from typing import Union

import numpy as np
import torch
from PIL import Image, ImageOps

ImageLike = Union[Image.Image, np.ndarray]


def to_rgb(image: ImageLike) -> Image.Image:
    """Any PIL mode (palette, 16-bit, grayscale, alpha, CMYK) or uint8 array -> RGB, alpha on white."""
    if isinstance(image, np.ndarray):
        if image.dtype != np.uint8 or image.ndim not in (2, 3):
            raise ValueError(f"expected a uint8 (H, W) or (H, W, C) array, got {image.dtype} {image.shape}")
        image = Image.fromarray(image)
    if not isinstance(image, Image.Image):
        raise TypeError(f"expected a PIL image or a uint8 array, got {type(image).__name__}")
    if getattr(image, "n_frames", 1) > 1:
        image.seek(0)  # animated: the first frame
    if image.width < 1 or image.height < 1:
        raise ValueError("the image is empty")
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(image, dtype=np.float64)
        peak = 65535.0 if arr.max() > 255 else 255.0
        image = Image.fromarray((arr / peak * 255).round().clip(0, 255).astype(np.uint8))
    elif image.mode == "F":
        arr = np.nan_to_num(np.asarray(image, dtype=np.float64))
        image = Image.fromarray((arr.clip(0, 1) * 255).round().astype(np.uint8) if arr.max() <= 1
                                else arr.clip(0, 255).astype(np.uint8))
    if image.mode == "P":
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA") or (image.mode != "RGB" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return image.convert("RGB")


def square(image: Image.Image, size: int) -> Image.Image:
    """Center-crop to a square and resize to size x size (area-averaging when shrinking)."""
    if image.width != image.height:
        image = ImageOps.fit(image, (min(image.size),) * 2, method=Image.Resampling.BOX)
    if image.width > size:
        return image.resize((size, size), Image.Resampling.BOX)
    return image.resize((size, size), Image.Resampling.LANCZOS) if image.width != size else image


def pil_to_tensor(images: list[Image.Image]) -> torch.Tensor:
    """RGB PIL images of one size -> (B, 3, H, W) floats in [0, 1]."""
    arr = np.stack([np.asarray(im.convert("RGB"), dtype=np.uint8) for im in images])
    return torch.from_numpy(arr).permute(0, 3, 1, 2).float() / 255.0


def tensor_to_pil(images: torch.Tensor) -> list[Image.Image]:
    """(B, 3, H, W) floats in [0, 1] -> RGB PIL images."""
    arr = (images.detach().float().clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
    return [Image.fromarray(a) for a in arr]


def mask_to_grid(mask: ImageLike, grid: int) -> torch.Tensor:
    """A mask image (white = regenerate; any mode or size) -> bool (grid, grid) token region.

    A token is in the region when any part of its cell is painted (over half-white), so a thin
    stroke still selects the tokens it crosses. Alpha-only strokes count as painted.
    """
    if isinstance(mask, np.ndarray):
        mask = Image.fromarray(mask if mask.dtype == np.uint8 else (np.asarray(mask) > 0).astype(np.uint8) * 255)
    if not isinstance(mask, Image.Image):
        raise TypeError(f"expected a PIL mask or an array, got {type(mask).__name__}")
    if mask.mode in ("RGBA", "LA", "PA", "P"):
        rgba = mask.convert("RGBA")
        black = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
        mask = Image.alpha_composite(black, rgba)
    gray = mask.convert("L")
    if gray.width != gray.height:
        gray = ImageOps.fit(gray, (min(gray.size),) * 2, method=Image.Resampling.BOX)
    cells = 8
    fine = np.asarray(gray.resize((grid * cells, grid * cells), Image.Resampling.BILINEAR), dtype=np.float32) / 255.0
    blocks = fine.reshape(grid, cells, grid, cells).max(axis=(1, 3))
    return torch.from_numpy(blocks > 0.5)


def nearest_upscale(image: Image.Image, size: int) -> Image.Image:
    """Upscale so each token stays a crisp block."""
    return image.resize((size, size), Image.Resampling.NEAREST)
