"""Image and mask conversion at the edges of the library: files, PIL or arrays in, tensors inside, PIL out.

Every input is checked here, once, with a message that says what was wrong: unreadable or damaged
files, decompression bombs (refused from the header, before decoding), empty images, arrays of the
wrong shape or dtype, and NaN / infinite / out-of-range float pixels. Animated files give their
first frame; palette, 16-bit, float, CMYK and alpha images are converted.
"""

from __future__ import annotations

import io
import os
import warnings
from typing import Any, Optional, Union

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

ImageLike = Union[Image.Image, np.ndarray, torch.Tensor, str, os.PathLike]
MAX_PIXELS = 64_000_000  # larger images are refused before they are decoded (decompression bombs)


class ImageError(ValueError):
    """An image (or mask) that cannot be used; the message says why, in words for the user."""


def open_image(source: Any, what: str = "image", max_pixels: int = MAX_PIXELS,
               max_side: Optional[int] = None) -> Image.Image:
    """A file path, bytes or binary file object -> a decoded PIL image in RGB, or RGBA when it has
    transparency. Animated files give their first frame; 16-bit, float, palette and CMYK images become
    8-bit. `max_side` reduces the image (area-averaging) so its long side is at most that many pixels.
    Raises ImageError for anything that is not a readable image or has more than `max_pixels` pixels."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        source = io.BytesIO(bytes(source))
    unreadable = f"The {what} is not a readable image file. Use a PNG, JPEG, WebP, GIF or BMP file."
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # decompression-bomb and EXIF warnings: the size is checked below
        try:
            image = Image.open(source)
        except FileNotFoundError:
            raise ImageError(f"The {what} file {source} does not exist.") from None
        except IsADirectoryError:
            raise ImageError(f"The {what} path {source} is a folder, not an image file.") from None
        except Image.DecompressionBombError:  # PIL's own guard, at twice its pixel limit
            raise ImageError(f"The {what} is far too large; the limit is {max_pixels / 1e6:g} megapixels.") from None
        except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
            raise ImageError(unreadable) from None
        if image.width * image.height > max_pixels:
            raise ImageError(f"The {what} is {image.width}x{image.height} pixels; the limit is "
                             f"{max_pixels / 1e6:g} megapixels.")
        try:
            if max_side is not None:
                image.draft("RGB", (max_side, max_side))  # JPEG: decode at a reduced scale
            image = ImageOps.exif_transpose(image)  # also loads the (first) frame
            image.load()
            if image.mode in ("RGBA", "LA", "PA", "P") or "transparency" in image.info:
                image = image.convert("RGBA")
            elif image.mode != "RGB":
                image = to_rgb(image)  # L, 1, I;16, I, F, CMYK, YCbCr ... -> RGB
            if max_side is not None and max(image.size) > max_side:
                image.thumbnail((max_side, max_side), Image.Resampling.BOX)
        except ImageError:
            raise
        except Exception:  # truncated data, bad chunks, codec errors: all "damaged"
            raise ImageError(f"The {what} file is damaged or in an unsupported format.") from None
    if image.width < 1 or image.height < 1:
        raise ImageError(f"The {what} is empty (0 pixels).")
    return image


def array_to_pil(array: Union[np.ndarray, torch.Tensor], what: str = "image") -> Image.Image:
    """An array -> PIL. numpy is (H, W) or (H, W, C); torch is (H, W) or (C, H, W); C is 1, 3 or 4.
    uint8 is taken as is, uint16 scaled from 0-65535, bool as black / white, floats must be finite
    and in [0, 1]."""
    if isinstance(array, torch.Tensor):
        array = array.detach().cpu()
        if array.ndim == 3:
            array = array.permute(1, 2, 0)
        array = array.float().numpy() if array.is_floating_point() else array.numpy()
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[..., 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (3, 4)):
        raise ImageError(f"The {what} array has shape {tuple(array.shape)}; expected (H, W) or (H, W, 1|3|4) "
                         "(torch tensors: (H, W) or (1|3|4, H, W)).")
    if array.shape[0] < 1 or array.shape[1] < 1:
        raise ImageError(f"The {what} is empty (shape {tuple(array.shape)}).")
    if array.shape[0] * array.shape[1] > MAX_PIXELS:
        raise ImageError(f"The {what} has {array.shape[0] * array.shape[1]:,} pixels; the limit is "
                         f"{MAX_PIXELS / 1e6:g} megapixels.")
    if array.dtype == np.bool_:
        array = array.astype(np.uint8) * 255
    elif array.dtype == np.uint16:
        array = (array.astype(np.float64) / 65535 * 255).round().astype(np.uint8)
    elif np.issubdtype(array.dtype, np.floating):
        if not np.isfinite(array).all():
            raise ImageError(f"The {what} array holds NaN or infinite values.")
        lo, hi = float(array.min()), float(array.max())
        if lo < -1e-3 or hi > 1 + 1e-3:
            hint = " (divide 0-255 values by 255)" if hi <= 255 and lo >= 0 else ""
            raise ImageError(f"Float {what} arrays must hold values in [0, 1]; got [{lo:g}, {hi:g}]{hint}.")
        array = (array.clip(0, 1) * 255).round().astype(np.uint8)
    elif array.dtype != np.uint8:
        raise ImageError(f"The {what} array has dtype {array.dtype}; use uint8, uint16, bool or float in [0, 1].")
    return Image.fromarray(np.ascontiguousarray(array))


def as_pil(image: ImageLike, what: str = "image") -> Image.Image:
    """Any accepted image input (PIL, array, tensor, file path) -> a PIL image (any mode), checked."""
    if isinstance(image, (str, os.PathLike)):
        return open_image(image, what)
    if isinstance(image, (np.ndarray, torch.Tensor)):
        return array_to_pil(image, what)
    if not isinstance(image, Image.Image):
        raise TypeError(f"expected the {what} as a PIL image, an array or a file path, got {type(image).__name__}")
    if image.width < 1 or image.height < 1:
        raise ImageError(f"The {what} is empty (0 pixels).")
    return image


def to_rgb(image: ImageLike) -> Image.Image:
    """Any PIL mode (palette, 16-bit, grayscale, alpha, CMYK), array or file -> RGB, alpha on white."""
    image = as_pil(image)
    if getattr(image, "n_frames", 1) > 1:
        image.seek(0)  # animated: the first frame
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


def as_mask(mask: ImageLike) -> Image.Image:
    """A mask input (as for images; also integer arrays, non-zero = regenerate) -> PIL, checked."""
    # Integer masks other than uint8 (e.g. int64 0/1 from numpy arithmetic): non-zero = regenerate.
    if isinstance(mask, torch.Tensor) and not mask.is_floating_point() and mask.dtype not in (torch.uint8, torch.bool):
        mask = mask != 0
    if isinstance(mask, np.ndarray) and np.issubdtype(mask.dtype, np.integer) and mask.dtype != np.uint8:
        mask = mask != 0
    return as_pil(mask, "mask")


def mask_to_grid(mask: ImageLike, grid: int) -> torch.Tensor:
    """A mask image (white = regenerate; any mode or size) -> bool (grid, grid) token region.

    A token is in the region when any part of its cell is painted (over half-white), so a thin
    stroke still selects the tokens it crosses. Alpha-only strokes count as painted.
    """
    mask = as_mask(mask)
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
