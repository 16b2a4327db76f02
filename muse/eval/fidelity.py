"""Pixel fidelity: the tokenizer's reconstructions, super-res from a perfect input, and inpainting."""

from __future__ import annotations

import math
import random

import numpy as np
import torch
import torch.nn.functional as F

from ..data import CaptionedImages
from ..data.captions import exact_name


def _from_arrays(arrays: list[np.ndarray]) -> torch.Tensor:
    """(H, W, 3) uint8 arrays -> (N, 3, H, W) floats in [0, 1]."""
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).float() / 255.0


def _to_array(images) -> np.ndarray:
    return np.stack([np.asarray(im.convert("RGB").resize((64, 64))) for im in images])


def _psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """PSNR of images (N, 3, H, W) in [0, 1], 8-bit rounded as a user sees them, over the whole set."""
    mse = ((a * 255).round() / 255 - b).pow(2).mean().item()
    return -10 * math.log10(max(mse, 1e-12))


@torch.no_grad()
def superres_fidelity(pipe, data: CaptionedImages, count: int = 96, seed: int = 0, **settings) -> dict[str, float]:
    """Super-res from a perfect input: `count` fixed dataset images box-downsampled to 32 px, through
    `pipe.superres(low_res, exact name, seed)`; PSNR of the 64 px output against the original, beside
    bicubic from the same 32 px image and the tokenizer's own 64 px reconstruction of the original.

    `superres_psnr` is the image `pipe.superres` returns (matched to its low-res input when
    `pipe.match_low_res` is on, the default); `superres_tokens_psnr` the tokenizer's decode of the same
    tokens alone, which is what the transformer contributes."""
    from PIL import Image

    from ..images import pil_to_tensor, square
    from ..render import match_low_res

    picks = sorted(random.Random(seed).sample(range(len(data)), min(count, len(data))))
    originals = torch.from_numpy(data.images[picks]).permute(0, 3, 1, 2).float() / 255.0  # (N, 3, 64, 64)
    small = F.avg_pool2d(originals, 2)
    raw, matched, bicubic = [], [], []
    for i, index in enumerate(picks):
        low = Image.fromarray((small[i].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8))
        # the tokens once; the two images from them as `pipe.superres` decodes them (tests/test_pipeline.py)
        ids = pipe.superres(low, exact_name(data.records[index]), seed=seed, output_type="ids", **settings)
        decoded = pipe.renderer.decode(ids).float()
        seen = pil_to_tensor([square(low, pipe.config.base_size)]).to(decoded)
        raw.append(decoded.cpu())
        matched.append((match_low_res(decoded, seen) if pipe.match_low_res else decoded).cpu())
        bicubic.append(np.asarray(low.resize((64, 64), Image.Resampling.BICUBIC)))
    recon = pipe.vq.decode(pipe.vq.encode(originals.to(pipe.device))).float().cpu()
    return {"superres_psnr": _psnr(torch.cat(matched), originals),
            "superres_tokens_psnr": _psnr(torch.cat(raw), originals),
            "bicubic_psnr": _psnr(_from_arrays(bicubic), originals),
            "tokenizer_psnr_64": _psnr(recon, originals), "count": len(picks)}


INPAINT_SIZE = 64


def centre_square(size: int = INPAINT_SIZE) -> np.ndarray:
    """(size, size) uint8 mask, 255 on the centred square of a quarter of the area."""
    mask = np.zeros((size, size), np.uint8)
    mask[size // 4: 3 * size // 4, size // 4: 3 * size // 4] = 255
    return mask


def blur_fill(images: torch.Tensor, hole: torch.Tensor, iterations: int = 400) -> torch.Tensor:
    """The baseline fill: the hole's pixels relaxed to the average of their neighbours (a harmonic fill,
    as a heavy blur from the hole's edge), known pixels fixed: (N, 3, H, W), (H, W) bool -> (N, 3, H, W)."""
    out = images.clone()
    ring = F.max_pool2d(hole[None, None].float(), 3, 1, 1)[0, 0].bool() & ~hole
    out[:, :, hole] = images[:, :, ring].mean(-1, keepdim=True)  # start from the edge's mean colour
    for _ in range(iterations):
        smooth = F.avg_pool2d(F.pad(out, (1, 1, 1, 1), mode="replicate"), 3, 1)
        out[:, :, hole] = smooth[:, :, hole]
    return out


@torch.no_grad()
def inpaint_fidelity(pipe, data: CaptionedImages, count: int = 96, seed: int = 0, **settings) -> dict[str, float]:
    """Inpainting a known hole: `count` fixed dataset images (64 px) with the centred square of a quarter
    of their area masked, filled by `pipe.inpaint` from their exact name at `seed`. PSNR inside the
    square against the original, beside `blur_fill` of the same hole."""
    from PIL import Image

    picks = sorted(random.Random(seed).sample(range(len(data)), min(count, len(data))))
    mask = centre_square()
    hole = torch.from_numpy(mask > 0)
    originals = torch.from_numpy(data.images[picks]).permute(0, 3, 1, 2).float() / 255.0
    filled = []
    for index in picks:
        image = Image.fromarray(data.images[index])
        out = pipe.inpaint(image, Image.fromarray(mask), exact_name(data.records[index]), seed=seed, **settings)[0]
        filled.append(np.asarray(out.convert("RGB").resize((INPAINT_SIZE, INPAINT_SIZE))))
    model = _from_arrays(filled)
    blur = blur_fill(originals, hole)
    inside = hole[None, None].expand_as(originals)

    def psnr_inside(x: torch.Tensor) -> float:
        err = ((x * 255).round() / 255 - originals)[inside].pow(2).mean().item()
        return -10 * math.log10(max(err, 1e-12))

    return {"inpaint_psnr": psnr_inside(model), "blur_fill_psnr": psnr_inside(blur), "count": len(picks)}


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


__all__ = ["superres_fidelity", "centre_square", "blur_fill", "inpaint_fidelity", "tokenizer_metrics"]
