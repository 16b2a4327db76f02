"""Evaluation: tokenizer reconstruction and prompt adherence of a pipeline on the emoji data.

  python -m muse.eval tokenizer --data data/emoji [--weights weights]
  python -m muse.eval adherence --data data/emoji [--weights weights] [--sweep]

Adherence is model-independent: generate from the exact name of 200 fixed emoji, then retrieve the
nearest dataset images in 16x16 box-filtered RGB; a hit is the right emoji (either set) at rank 1
or within the 5 nearest. Random dataset images stand in for generations to give the floor.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
import time
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .data import CaptionedImages, load_dataset
from .data.captions import exact_name

FEATURE_SIZE = 16


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


def eval_prompts(data: CaptionedImages, count: int = 200, seed: int = 0) -> list[tuple[str, str]]:
    """(key, exact name) of `count` fixed emoji with distinct names."""
    by_name: dict[str, str] = {}
    for record in data.records:
        by_name.setdefault(exact_name(record), record["key"])
    names = sorted(by_name)
    chosen = random.Random(seed).sample(names, min(count, len(names)))
    return [(by_name[name], name) for name in chosen]


def _to_array(images) -> np.ndarray:
    return np.stack([np.asarray(im.convert("RGB").resize((64, 64))) for im in images])


def adherence(pipe, data: CaptionedImages, prompts: list[tuple[str, str]], batch: int = 16,
              **settings) -> tuple[dict[str, float], np.ndarray]:
    """Generate one image per prompt (seed 0 for every batch) and score retrieval accuracy."""
    images = []
    for start in range(0, len(prompts), batch):
        names = [name for _, name in prompts[start:start + batch]]
        images.extend(pipe(names, seed=0, **settings))
    generated = _to_array(images)
    return topk_accuracy(generated, [key for key, _ in prompts], data), generated


def random_floor(data: CaptionedImages, prompts: list[tuple[str, str]], seed: int = 0) -> dict[str, float]:
    """Accuracy when each 'generation' is a random dataset image."""
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(data), len(prompts))
    return topk_accuracy(data.images[picks], [key for key, _ in prompts], data)


@torch.no_grad()
def tokenizer_metrics(vq, data: CaptionedImages, batch: int = 128, preview=None) -> dict[str, float]:
    """PSNR at 32 and 64 px over all images, and codebook usage (fraction used, perplexity). With a
    preview decoder, also its PSNR against the full decoder's images of the same ids (preview_psnr_*)."""
    out: dict[str, float] = {}
    counts = torch.zeros(vq.codebook_size)
    for size in (32, 64):
        se, pse, n = 0.0, 0.0, 0
        for start in range(0, len(data), batch):
            x = torch.from_numpy(data.images[start:start + batch]).permute(0, 3, 1, 2).float() / 255.0
            if size != x.shape[-1]:
                x = F.interpolate(x, size=size, mode="area")
            ids = vq.encode(x)
            counts += torch.bincount(ids.flatten(), minlength=vq.codebook_size).float()
            recon = vq.decode(ids)
            # PSNR on 8-bit images, as a user sees them.
            se += ((recon * 255).round() / 255 - x).pow(2).mean(dim=(1, 2, 3)).sum().item()
            if preview is not None:
                pse += ((preview.decode(vq, ids) * 255).round() / 255 - recon).pow(2).mean(dim=(1, 2, 3)).sum().item()
            n += x.shape[0]
        out[f"psnr_{size}"] = -10 * math.log10(max(se / n, 1e-12))
        if preview is not None:
            out[f"preview_psnr_{size}"] = -10 * math.log10(max(pse / n, 1e-12))
    p = counts / counts.sum()
    out["codebook_used"] = float((counts > 0).float().mean())
    out["codebook_perplexity"] = float(torch.exp(-(p[p > 0] * p[p > 0].log()).sum()))
    return out


def main(argv: Optional[list[str]] = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m muse.eval", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", choices=("tokenizer", "adherence", "all"))
    ap.add_argument("--data", type=Path, default=Path("data/emoji"))
    ap.add_argument("--weights", default=None, help="pipeline folder or Hub id (default: shipped weights/)")
    ap.add_argument("--count", type=int, default=200)
    ap.add_argument("--sweep", action="store_true", help="also cond_scale 1 and 4/8/12/24 steps")
    ap.add_argument("--out", type=Path, help="write the figures as JSON here")
    a = ap.parse_args(argv)
    from . import load_pipeline

    data = load_dataset(a.data, 64)
    pipe = load_pipeline(a.weights, device="cpu")
    results: dict = {}
    t0 = time.time()
    if a.what in ("tokenizer", "all"):
        results["tokenizer"] = tokenizer_metrics(pipe.vq, data, preview=pipe.preview_decoder)
        print("tokenizer:", json.dumps({k: round(v, 4) for k, v in results["tokenizer"].items()}))
    if a.what in ("adherence", "all"):
        prompts = eval_prompts(data, a.count)
        results["floor"] = random_floor(data, prompts)
        print("random floor:", results["floor"])
        runs = {"default": {}}
        if a.sweep:
            runs.update({"cond_scale=1": {"cond_scale": 1.0}, "timesteps=4": {"timesteps": 4},
                         "timesteps=8": {"timesteps": 8}, "timesteps=12": {"timesteps": 12},
                         "timesteps=24": {"timesteps": 24}})
        results["adherence"] = {}
        for label, settings in runs.items():
            t = time.time()
            scores, _ = adherence(pipe, data, prompts, **settings)
            results["adherence"][label] = {**scores, "seconds": round(time.time() - t, 1)}
            print(f"{label}: top1 {scores['top1']:.1%} top5 {scores['top5']:.1%} ({time.time() - t:.0f} s)", flush=True)
        results["defaults"] = pipe.settings().__dict__ | {"schedule": str(pipe.settings().schedule)}
    results["seconds"] = round(time.time() - t0, 1)
    if a.out:
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(json.dumps(results, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
