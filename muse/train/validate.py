"""Held-out validation of a transformer stage while it trains: masked-token accuracy on fixed batches.

Two rows, each at fixed masks of 25 / 50 / 75 / 100 % drawn once from a fixed seed:
- `para`: the held-out paraphrases (`muse.data.paraphrases`, never training captions) on their emoji's
  images, both sets. This is the curve that says when training stops paying: at 100 % masked the
  caption alone must name the image.
- `name`: 256 fixed base-form emoji under their exact names, a training caption: how well the data fits.

The text encoder runs once, when the set is built; each check is a few forward passes of the model.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Callable, Optional

import torch
import torch.nn.functional as F

from ..data import CaptionedImages
from ..data.captions import exact_name
from ..data.paraphrases import PARAPHRASES
from ..transformer import MaskedTransformer

MASK_RATIOS = (0.25, 0.5, 0.75, 1.0)
NAME_COUNT = 256


@dataclass(eq=False)
class ValidationRow:
    """One row's fixed batch: image indices (B,), caption embeddings (B, L, D) and mask (B, L)."""

    indices: torch.Tensor
    embeds: torch.Tensor
    mask: torch.Tensor


def validation_captions(data: CaptionedImages, seed: int = 0) -> dict[str, list[tuple[int, str]]]:
    """(image index, caption) pairs of each row; images without a name (folder data) give no rows."""
    toneless = [i for i, r in enumerate(data.records) if "name" in r and not r.get("skin_tone")]
    by_name: dict[str, list[int]] = {}
    for i in toneless:
        by_name.setdefault(data.records[i]["name"], []).append(i)
    para = [(i, text) for text, name in PARAPHRASES for i in by_name.get(name, [])]
    chosen = sorted(random.Random(seed).sample(toneless, min(NAME_COUNT, len(toneless))))
    names = [(i, exact_name(data.records[i])) for i in chosen]
    return {name: rows for name, rows in (("para", para), ("name", names)) if rows}


def build_validation(data: CaptionedImages, encode: Callable[[list[str]], tuple[torch.Tensor, torch.Tensor]],
                     seed: int = 0) -> dict[str, ValidationRow]:
    """Each row's batch, captions encoded with `encode` (a `TextEncoder`)."""
    rows = {}
    for name, pairs in validation_captions(data, seed).items():
        embeds, mask = encode([caption for _, caption in pairs])
        rows[name] = ValidationRow(torch.tensor([i for i, _ in pairs]), embeds.float().cpu(), mask.cpu())
    return rows


@torch.no_grad()
def masked_token_metrics(model: MaskedTransformer, ids: torch.Tensor, row: ValidationRow,
                         cond_ids: Optional[torch.Tensor] = None, seed: int = 0) -> dict[str, float]:
    """Mean cross-entropy and accuracy over the masked positions of ids (B, N), each mask ratio weighted
    alike; the masks depend only on `seed` and the shape, so every check sees the same ones."""
    device = next(model.parameters()).device
    b, n = ids.shape
    generator = torch.Generator().manual_seed(seed)
    ce = acc = 0.0
    context = model.prepare_context(row.embeds.to(device), row.mask.to(device),
                                    None if cond_ids is None else cond_ids.to(device))
    for ratio in MASK_RATIOS:
        ranks = torch.rand(b, n, generator=generator).argsort(-1).argsort(-1)
        mask = (ranks < max(1, round(ratio * n))).to(device)
        x = torch.where(mask, torch.full_like(ids, model.mask_id), ids.to(device))
        logits, _ = model(x, context)
        target = ids.to(device)[mask]
        ce += F.cross_entropy(logits[mask].float(), target).item()
        acc += (logits[mask].argmax(-1) == target).float().mean().item()
    return {"ce": ce / len(MASK_RATIOS), "acc": acc / len(MASK_RATIOS)}


def validate(model: MaskedTransformer, rows: dict[str, ValidationRow], ids: torch.Tensor,
             cond_ids: Optional[torch.Tensor] = None) -> dict[str, float]:
    """{'val_para_acc': ..., 'val_para_ce': ..., 'val_name_acc': ...} for a stage whose targets are
    ids (N_images, N) (and conditioning ids (N_images, M) for super-res)."""
    was_training = model.training
    model.eval()
    out = {}
    for name, row in rows.items():
        cond = None if cond_ids is None else cond_ids[row.indices]
        for key, value in masked_token_metrics(model, ids[row.indices], row, cond).items():
            out[f"val_{name}_{key}"] = round(value, 5)
    model.train(was_training)
    return out


__all__ = ["MASK_RATIOS", "ValidationRow", "validation_captions", "build_validation", "masked_token_metrics",
           "validate"]
