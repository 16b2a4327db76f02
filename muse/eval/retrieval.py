"""Prompt adherence and diversity, measured by retrieval in 16x16 box-filtered RGB.

A generated image is a hit when the nearest dataset image (top-1), or one of the 5 nearest (top-5), is
the emoji the prompt names, from either set. Diversity is the mean pairwise distance between the images
of one prompt under several seeds, in the same 16x16 features.

With `base_only`, the images are the base stage's 32 px: super-res matches its 64 px image to them
(`muse.render.match_low_res`), so their 16x16 features are the same to 8-bit rounding (measured on the
shipped model: at most 0.0025 apart, where two different images lie ~7 apart) at under half the cost.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F

from ..data import CaptionedImages

FEATURE_SIZE = 16
DIVERSITY_SEEDS = (0, 1, 2, 3)


def features(images: np.ndarray | torch.Tensor) -> torch.Tensor:
    """(N, H, W, 3) uint8 -> (N, 16*16*3) box-filtered RGB in [0, 1]."""
    x = torch.as_tensor(np.asarray(images)).permute(0, 3, 1, 2).float() / 255.0
    x = F.adaptive_avg_pool2d(x, FEATURE_SIZE).flatten(1)
    return x


def retrieve(queries: torch.Tensor, bank: torch.Tensor, k: int = 5) -> torch.Tensor:
    """Indices of the k nearest bank rows (L2) to each query: (Q, D), (N, D) -> (Q, k)."""
    d = torch.cdist(queries, bank)
    return d.topk(k, largest=False).indices


def topk_accuracy(generated: np.ndarray, target_keys: Sequence[str], data: CaptionedImages,
                  bank: Optional[torch.Tensor] = None) -> dict[str, float]:
    """Top-1 / top-5 retrieval accuracy of images (Q, H, W, 3) against their target emoji keys."""
    bank = features(data.images) if bank is None else bank
    nearest = retrieve(features(generated), bank, 5)
    keys = [r["key"] for r in data.records]
    top1 = top5 = 0
    for row, target in zip(nearest.tolist(), target_keys):
        found = [keys[i] for i in row]
        top1 += found[0] == target
        top5 += target in found
    n = max(1, len(target_keys))
    return {"top1": top1 / n, "top5": top5 / n}


def generate(pipe, prompts: Sequence[str], seed: int = 0, batch: int = 16, base_only: bool = False,
             **settings) -> np.ndarray:
    """One image per prompt, every batch from `seed`: (N, H, W, 3) uint8 (64 px, or 32 px with base_only)."""
    images = []
    for start in range(0, len(prompts), batch):
        chunk = list(prompts[start:start + batch])
        out = pipe(chunk, seed=seed, superres=False, **settings) if base_only else pipe(chunk, seed=seed, **settings)
        images += [np.asarray(im.convert("RGB")) for im in out]
    return np.stack(images)


def adherence(pipe, data: CaptionedImages, prompts: list[tuple[str, str]], batch: int = 16, base_only: bool = False,
              **settings) -> tuple[dict[str, float], np.ndarray]:
    """Generate one image per (key, prompt) at seed 0 and score retrieval accuracy against the keys."""
    generated = generate(pipe, [text for _, text in prompts], 0, batch, base_only, **settings)
    return topk_accuracy(generated, [key for key, _ in prompts], data), generated


def diversity(pipe, prompts: Sequence[str], seeds: Sequence[int] = DIVERSITY_SEEDS, batch: int = 16,
              base_only: bool = False, **settings) -> float:
    """Mean pairwise L2 distance in 16x16 RGB features between the images of each prompt under `seeds`,
    averaged over prompts. 0: every seed draws the same image."""
    feats = torch.stack([features(generate(pipe, prompts, seed, batch, base_only, **settings)) for seed in seeds])
    pairs = list(itertools.combinations(range(len(seeds)), 2))
    return float(torch.stack([(feats[i] - feats[j]).norm(dim=-1) for i, j in pairs]).mean())


def settings_row(pipe, data: CaptionedImages, names: list[tuple[str, str]], paraphrases: list[tuple[str, str]],
                 varied: Sequence[str], **settings) -> dict[str, float]:
    """One row of a settings comparison on the base stage: adherence on `names` and `paraphrases` ((key,
    prompt) pairs; none: no paraphrase columns) and the diversity of `varied` prompts over 4 seeds."""
    row = {f"names_{k}": v for k, v in adherence(pipe, data, names, base_only=True, **settings)[0].items()}
    if paraphrases:
        scores = adherence(pipe, data, paraphrases, base_only=True, **settings)[0]
        row |= {f"paraphrases_{k}": v for k, v in scores.items()}
    row["diversity"] = diversity(pipe, varied, base_only=True, **settings)
    return row


def random_floor(data: CaptionedImages, prompts: list[tuple[str, str]], seed: int = 0) -> dict[str, float]:
    """Accuracy when each 'generation' is a random dataset image."""
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(data), len(prompts))
    return topk_accuracy(data.images[picks], [key for key, _ in prompts], data)




__all__ = ["FEATURE_SIZE", "DIVERSITY_SEEDS", "features", "retrieve", "topk_accuracy", "generate", "adherence",
           "diversity", "settings_row", "random_floor"]
