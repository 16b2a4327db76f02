"""Datasets of captioned images: the built emoji set or a folder of your own images."""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from muse.data.captions import DEFAULT_RECIPE, sample_caption
from muse.data.folder import CAPTION_FILES, load_folder

__all__ = ["CaptionedImages", "load_dataset"]


@dataclass
class CaptionedImages:
    """Images (N, H, W, 3) uint8 with one meta record each."""

    images: np.ndarray
    records: list[dict]

    def __post_init__(self) -> None:
        shape = self.images.shape
        if self.images.dtype != np.uint8 or len(shape) != 4 or shape[3] != 3 or shape[1] != shape[2]:
            raise ValueError(f"images must be (N, H, H, 3) uint8, got {shape} {self.images.dtype}")
        if len(self.records) != shape[0]:
            raise ValueError(f"{shape[0]} images but {len(self.records)} records")

    def __len__(self) -> int:
        return len(self.records)

    def caption(self, index: int, rng: random.Random, recipe: str = DEFAULT_RECIPE) -> str:
        """A training caption for image `index`, drawn with `rng` (emoji records: by `recipe`, see
        `muse.data.captions`)."""
        record = self.records[index]
        if "captions" in record:  # folder data: the user's own captions
            return rng.choice(record["captions"])
        if "caption" in record:
            return record["caption"]
        return sample_caption(record, rng, recipe)

    def subset(self, indices: Sequence[int] | np.ndarray) -> CaptionedImages:
        """The images at `indices`, in that order."""
        indices = np.asarray(indices, dtype=np.int64).reshape(-1)
        return CaptionedImages(self.images[indices], [self.records[i] for i in indices.tolist()])


def _resize(images: np.ndarray, size: int) -> np.ndarray:
    """(N, H, H, 3) -> (N, size, size, 3) with LANCZOS (box-like when shrinking by 2x)."""
    if images.shape[1] == size:
        return images
    resized = np.zeros((len(images), size, size, 3), np.uint8)
    for i, image in enumerate(images):
        resized[i] = np.asarray(Image.fromarray(image).resize((size, size), Image.Resampling.LANCZOS))
    return resized


def _load_emoji(folder: Path, image_size: int) -> CaptionedImages:
    images = np.load(folder / "images.npy", allow_pickle=False)  # never unpickle a file a user hands over
    with open(folder / "meta.jsonl", encoding="utf-8") as handle:
        records = [json.loads(line) for line in handle if line.strip()]
    if images.dtype != np.uint8 or images.ndim != 4:
        found = f"{images.shape} {images.dtype}"
        raise ValueError(f"{folder / 'images.npy'}: expected (N, H, W, 3) uint8, got {found}")
    return CaptionedImages(_resize(images, image_size), records)


def load_dataset(path: str | Path, image_size: int = 64) -> CaptionedImages:
    """Load `images.npy` + `meta.jsonl` (emoji) or a captioned image folder, at image_size x image_size."""
    folder = Path(path)
    if (folder / "images.npy").is_file() and (folder / "meta.jsonl").is_file():
        return _load_emoji(folder, image_size)
    if any((folder / name).is_file() for name in CAPTION_FILES):
        return CaptionedImages(*load_folder(folder, image_size))
    raise ValueError(
        f"{path} is not a dataset: expected images.npy + meta.jsonl (build them with "
        f"`python -m muse.data.emoji`) or image files with {' or '.join(CAPTION_FILES)}"
    )
