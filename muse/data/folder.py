"""Your own data: a folder of images plus `captions.jsonl` or `captions.csv`."""

from __future__ import annotations

import csv
import json
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
CAPTION_FILES = ("captions.jsonl", "captions.csv")


def to_rgb_array(image: Image.Image, size: int) -> np.ndarray:
    """Any PIL image -> (size, size, 3) uint8: alpha over white, center-cropped square, resized."""
    image = ImageOps.exif_transpose(image)  # phone photos store their rotation in EXIF
    if image.mode.startswith("I") or image.mode == "F":
        # 16/32-bit greyscale: convert() would clip every value above 255 to white, so rescale
        values = np.asarray(image, dtype=np.float32)
        if image.mode.startswith("I;16") or values.max() > 255:
            values = values / 257.0
        image = Image.fromarray(np.clip(values, 0, 255).round().astype(np.uint8), "L")
    rgba = image.convert("RGBA")
    white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    rgb = Image.alpha_composite(white, rgba).convert("RGB")
    if rgb.size != (size, size):
        width, height = rgb.size
        side = min(width, height)
        left, top = (width - side) // 2, (height - side) // 2
        # LANCZOS both ways; reducing_gap first box-reduces big photos, which is fast and alias-free
        rgb = rgb.resize((size, size), Image.Resampling.LANCZOS, box=(left, top, left + side, top + side),
                         reducing_gap=3.0)
    return np.asarray(rgb, dtype=np.uint8)


def load_image(path: Path, size: int) -> np.ndarray:
    """Read one image file -> (size, size, 3) uint8; PIL's decompression-bomb limit stays on."""
    try:
        with Image.open(path) as image:
            image.draft("RGB", (size, size))  # JPEG: decode at a reduced scale, still >= size
            return to_rgb_array(image, size)
    except Image.DecompressionBombError as error:
        raise ValueError(f"{path}: refused, too many pixels for a training image ({error})") from error


def _as_caption_list(value: object, where: str) -> list[str]:
    captions = [value] if isinstance(value, str) else value
    if not isinstance(captions, list) or not all(isinstance(c, str) and c.strip() for c in captions or [""]):
        raise ValueError(f"{where}: 'caption' must be a non-empty string or list of strings, got {value!r}")
    return [c.strip() for c in captions]


def read_captions(folder: Path) -> dict[str, list[str]]:
    """Captions file in `folder` -> {relative file name: [captions]}; repeated files accumulate."""
    present = [folder / name for name in CAPTION_FILES if (folder / name).is_file()]
    if len(present) != 1:
        found = "both" if present else "neither"
        raise ValueError(f"{folder}: expected exactly one of {' or '.join(CAPTION_FILES)}, found {found}")
    path = present[0]
    rows: list[tuple[str, object, str]] = []  # (file, caption, where) for error messages
    with open(path, newline="", encoding="utf-8") as handle:
        if path.suffix == ".jsonl":
            for line_no, line in enumerate(handle, 1):
                if not line.strip():
                    continue
                item = json.loads(line)
                if not isinstance(item, dict) or "file" not in item or "caption" not in item:
                    raise ValueError(f"{path}:{line_no}: expected an object with 'file' and 'caption'")
                rows.append((item["file"], item["caption"], f"{path}:{line_no}"))
        else:
            reader = csv.DictReader(handle)
            if not reader.fieldnames or not {"file", "caption"} <= set(reader.fieldnames):
                raise ValueError(f"{path}: needs a header with columns file,caption; got {reader.fieldnames}")
            for row in reader:
                rows.append((row["file"], row["caption"], f"{path}:{reader.line_num}"))
    captions: dict[str, list[str]] = {}
    for file, caption, where in rows:
        if not isinstance(file, str) or not file:
            raise ValueError(f"{where}: 'file' must be a non-empty string")
        key = Path(file).as_posix()
        captions.setdefault(key, []).extend(_as_caption_list(caption, where))
    return captions


def load_folder(folder: str | Path, image_size: int = 64) -> tuple[np.ndarray, list[dict]]:
    """Folder of captioned images -> images (N, image_size, image_size, 3) uint8 and records."""
    folder = Path(folder)
    captions = read_captions(folder)
    root = folder.resolve()
    for file in captions:
        path = (folder / file).resolve()
        if not path.is_relative_to(root):
            raise ValueError(f"{folder}: caption names {file!r}, which is outside the folder")
        if not path.is_file():
            raise FileNotFoundError(f"{folder}: caption names {file!r}, but there is no such file")
    on_disk = {
        p.relative_to(folder).as_posix()
        for p in folder.rglob("*")
        if p.suffix.lower() in IMAGE_EXTENSIONS
    }
    uncaptioned = on_disk - captions.keys()
    if uncaptioned:
        warnings.warn(f"{folder}: skipped {len(uncaptioned)} images without a caption", stacklevel=2)
    files = sorted(captions)
    images = np.stack([load_image(folder / file, image_size) for file in files]) if files else (
        np.zeros((0, image_size, image_size, 3), np.uint8))
    records = [{"key": file, "captions": captions[file]} for file in files]
    return images, records
