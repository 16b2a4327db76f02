"""Evaluation of a pipeline on the emoji data: tokenizer, super-res fidelity, critics, prompt adherence, samples.

  python -m muse.eval tokenizer --data data/emoji [--weights weights]
  python -m muse.eval superres  --data data/emoji [--weights weights]
  python -m muse.eval adherence --data data/emoji [--weights weights] [--count 1000] [--sweep]
  python -m muse.eval critic    --data data/emoji [--weights weights]
  python -m muse.eval samples   [--weights weights] [--sheet weights/samples.png]
  python -m muse.eval all ...   (all five)

Adherence is model-independent: generate from the exact name of `--count` fixed emoji (and from
the held-out paraphrases of `muse.data.paraphrases`), then retrieve the nearest dataset images in
16x16 box-filtered RGB; a hit is the right emoji (either set) at rank 1 or within the 5 nearest.
Random dataset images stand in for generations to give the floor. Super-res fidelity hands the
super-res stage a perfect 32 px input (a dataset image box-downsampled) and compares its 64 px
output with the original, beside a bicubic upscale and the tokenizer's own 64 px reconstruction.
The critic's ranking asks of each stage's critic what the sampler asks of it: which of the generator's
sampled tokens are wrong. Its AUC is set beside that of the generator's own confidence.
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
from .data.paraphrases import PARAPHRASES

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


def paraphrase_prompts(data: CaptionedImages) -> list[tuple[str, str]]:
    """(key, paraphrase) for every held-out paraphrase whose emoji is in `data` (the toneless variant)."""
    keys = {r["name"]: r["key"] for r in data.records if not r.get("skin_tone") and "name" in r}
    return [(keys[name], text) for text, name in PARAPHRASES if name in keys]


# The sample sheet's prompts: everyday subjects a new user would try first, fixed once.
SAMPLE_PROMPTS = ("red heart", "grinning face", "rocket", "sun", "fire", "snowman", "blue car", "the moon at night",
                  "cat face", "pizza", "christmas tree", "rainbow", "ghost", "thumbs up", "birthday cake", "penguin")
SAMPLE_SEEDS = (0, 1)


def sample_sheet(pipe, prompts: Sequence[str] = SAMPLE_PROMPTS, seeds: Sequence[int] = SAMPLE_SEEDS,
                 scale: int = 2, **settings):
    """A labelled grid: one column per prompt, one row per seed, each image upscaled `scale`x (nearest)."""
    from PIL import Image, ImageDraw

    rows = [pipe(list(prompts), seed=seed, **settings) for seed in seeds]
    cell = rows[0][0].width * scale
    label_h, cols = 14, 8
    blocks = math.ceil(len(prompts) / cols)
    sheet = Image.new("RGB", (cols * cell, blocks * (label_h + len(seeds) * cell)), "white")
    draw = ImageDraw.Draw(sheet)
    for i, prompt in enumerate(prompts):
        x, y = (i % cols) * cell, (i // cols) * (label_h + len(seeds) * cell)
        draw.text((x + 2, y + 1), prompt[: cell // 6], fill="black")
        for r, images in enumerate(rows):
            sheet.paste(images[i].resize((cell, cell), Image.Resampling.NEAREST), (x, y + label_h + r * cell))
    return sheet


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

    from .images import pil_to_tensor, square
    from .render import match_low_res

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


def ranking_auc(scores: torch.Tensor, wrong: torch.Tensor) -> float:
    """Area under the ROC curve of `scores` (N,) for flagging `wrong` (N,) bool: the chance that a wrong
    token scores higher than a right one (ties count half). 0.5 is chance, 1 a perfect ranking."""
    scores, wrong = scores.double(), wrong.bool()
    n_wrong, n_right = int(wrong.sum()), int((~wrong).sum())
    if not n_wrong or not n_right:
        return float("nan")
    values, inverse, counts = torch.unique(scores, return_inverse=True, return_counts=True)
    mid_rank = counts.cumsum(0).double() - (counts.double() - 1) / 2  # 1-based average rank of each tie group
    rank_sum = mid_rank[inverse][wrong].sum().item()
    return (rank_sum - n_wrong * (n_wrong + 1) / 2) / (n_wrong * n_right)


@torch.no_grad()
def critic_ranking(pipe, data: CaptionedImages, count: int = 256, seed: int = 0, batch: int = 32) -> dict[str, dict]:
    """How well each stage's critic spots the generator's wrong tokens, against the generator's own
    confidence (what the sampler ranks by without a critic).

    `count` fixed dataset images are tokenized (32 px for the base stage, 64 px for super-res, with its
    32 px ids as conditioning) and captioned with their exact names. A cosine-schedule share of each grid
    is masked, the generator samples the masked tokens as the critics are trained to see them
    (`muse.train.losses.sample_for_critic`), and a sampled token is wrong where it differs from the image's.
    Per stage: the AUC of the critic's score and of the negative log-probability of the sampled token,
    over the sampled tokens."""
    from .train.losses import random_mask, sample_for_critic

    picks = sorted(random.Random(seed).sample(range(len(data)), min(count, len(data))))
    gen = torch.Generator().manual_seed(seed)
    stages = {"base": (pipe.base_model, pipe.base_critic), "superres": (pipe.superres_model, pipe.superres_critic)}
    out: dict[str, dict] = {}
    for name, (model, critic) in stages.items():
        if model is None or critic is None:
            continue
        critic_scores, neg_log_probs, wrong = [], [], []
        for start in range(0, len(picks), batch):
            chunk = picks[start:start + batch]
            images = torch.from_numpy(data.images[chunk]).permute(0, 3, 1, 2).float().div(255).to(pipe.device)
            ids32 = pipe.vq.encode(F.avg_pool2d(images, 2)).flatten(1)
            ids = pipe.vq.encode(images).flatten(1) if name == "superres" else ids32
            cond = ids32 if name == "superres" else None
            embeds, mask = pipe.text_encoder([exact_name(data.records[i]) for i in chunk])
            embeds, mask = embeds.to(pipe.device), mask.to(pipe.device)
            masked = random_mask(*ids.shape, "cosine", gen, ids.device)  # as the critic was trained
            x = torch.where(masked, torch.full_like(ids, model.mask_id), ids)
            logits, _ = model(x, model.prepare_context(embeds, mask, cond))
            logits = logits.float()
            sampled = sample_for_critic(logits, gen)
            filled = torch.where(masked, sampled, ids)
            scores, _ = critic(filled, critic.prepare_context(embeds, mask, cond))
            log_probs = logits.log_softmax(-1).gather(-1, sampled[..., None]).squeeze(-1)
            critic_scores.append(scores.float()[masked].cpu())
            neg_log_probs.append(-log_probs[masked].cpu())
            wrong.append((sampled != ids)[masked].cpu())
        flags = torch.cat(wrong)
        out[name] = {"critic_auc": ranking_auc(torch.cat(critic_scores), flags),
                     "confidence_auc": ranking_auc(torch.cat(neg_log_probs), flags),
                     "wrong_share": flags.float().mean().item(), "sampled_tokens": len(flags), "images": len(picks)}
    return out


def _from_arrays(arrays: list[np.ndarray]) -> torch.Tensor:
    """(H, W, 3) uint8 arrays -> (N, 3, H, W) floats in [0, 1]."""
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).float() / 255.0


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


# --sweep: each setting against the pipeline's defaults, on the same names and seeds. The critic noise
# rows run with the critic on: without it the noise has nothing to act on.
ADHERENCE_SWEEP: dict[str, dict] = {
    "default": {}, "cond_scale=1": {"cond_scale": 1.0}, "timesteps=4": {"timesteps": 4},
    "timesteps=8": {"timesteps": 8}, "timesteps=24": {"timesteps": 24},
    "critic on": {"use_critic": True}, "critic off": {"use_critic": False},
    "critic on, noise 0": {"use_critic": True, "critic_noise_scale": 0.0},
    "critic on, noise 2": {"use_critic": True, "critic_noise_scale": 2.0}}
SUPERRES_SWEEP: dict[str, dict] = {"critic on": {"use_critic": True}, "critic off": {"use_critic": False}}


def main(argv: Optional[list[str]] = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m muse.eval", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", choices=("tokenizer", "superres", "critic", "adherence", "samples", "all"))
    ap.add_argument("--data", type=Path, default=Path("data/emoji"))
    ap.add_argument("--weights", default=None, help="pipeline folder or Hub id (default: shipped weights/)")
    ap.add_argument("--count", type=int, default=1000, help="exact names for adherence")
    ap.add_argument("--sweep", nargs="?", const="all", choices=("all", "critic"),
                    help="also cond_scale 1, 4/8/24 steps, the critic and its noise on the first --sweep-count "
                         "names and the paraphrases with the critic, and super-res with and without its critic; "
                         "'--sweep critic': the critic's rows only")
    ap.add_argument("--sweep-count", type=int, default=200)
    ap.add_argument("--sheet", type=Path, default=None, help="samples: where to write the sheet "
                                                             "(default: samples.png in the weights folder)")
    ap.add_argument("--out", type=Path, help="write the figures as JSON here")
    a = ap.parse_args(argv)
    from . import load_pipeline
    from .pipeline import DEFAULT_WEIGHTS

    try:
        data = load_dataset(a.data, 64)
        pipe = load_pipeline(a.weights, device="cpu")
    except ValueError as err:  # no dataset or no model there: one line, as the muse command line says it
        print(f"error: {err}", file=sys.stderr)
        return 2
    results: dict = {}
    t0 = time.time()
    if a.what in ("tokenizer", "all"):
        results["tokenizer"] = tokenizer_metrics(pipe.vq, data, preview=pipe.preview_decoder)
        print("tokenizer:", json.dumps({k: round(v, 4) for k, v in results["tokenizer"].items()}))
    if a.what in ("superres", "all"):
        t = time.time()
        results["superres"] = superres_fidelity(pipe, data)
        print("superres:", json.dumps({k: round(v, 3) for k, v in results["superres"].items()}),
              f"({time.time() - t:.0f} s)", flush=True)
        if a.sweep:  # the same 96 images and seed, sampled with and without the super-res critic
            for label, settings in SUPERRES_SWEEP.items():
                t = time.time()
                same = all(getattr(pipe.settings(), k) == v for k, v in settings.items())  # the run above
                psnr = results["superres"]["superres_psnr"] if same else \
                    superres_fidelity(pipe, data, **settings)["superres_psnr"]
                results["superres"][label] = psnr
                print(f"superres {label}: {psnr:.3f} dB ({time.time() - t:.0f} s)", flush=True)
    if a.what in ("critic", "all"):
        t = time.time()
        results["critic"] = critic_ranking(pipe, data)
        for stage, figures in results["critic"].items():
            print(f"critic {stage}: AUC {figures['critic_auc']:.3f} against the confidence's "
                  f"{figures['confidence_auc']:.3f} ({figures['wrong_share']:.1%} of "
                  f"{figures['sampled_tokens']} sampled tokens wrong)", flush=True)
        if not results["critic"]:
            print("critic: this pipeline has no critic")
        print(f"({time.time() - t:.0f} s)")
    if a.what in ("adherence", "all"):
        prompts = eval_prompts(data, a.count)
        paraphrases = paraphrase_prompts(data)
        results["floor"] = random_floor(data, prompts)
        print("random floor:", results["floor"])
        runs: dict[str, tuple[list, dict]] = {f"default ({len(prompts)} names)": (prompts, {})}
        if paraphrases:  # a dataset of your own has none of the emoji they name
            runs[f"paraphrases ({len(paraphrases)})"] = (paraphrases, {})
        if a.sweep:
            few = prompts[: a.sweep_count]
            for label, settings in ADHERENCE_SWEEP.items():
                if a.sweep == "critic" and "critic" not in label:
                    continue
                if label != "default" or len(few) < len(prompts):  # else the run above is this one
                    runs[f"{label} ({len(few)} names)"] = (few, settings)
            if paraphrases:
                runs[f"paraphrases, critic on ({len(paraphrases)})"] = (paraphrases, {"use_critic": True})
        results["adherence"] = {}
        defaults = pipe.settings()
        done: dict[tuple, str] = {}  # a run the defaults already gave (e.g. critic off when it is off) is not redone
        for label, (chosen, settings) in runs.items():
            key = (tuple(chosen), tuple(sorted((k, v) for k, v in settings.items() if getattr(defaults, k) != v)))
            if key in done:
                results["adherence"][label] = {**results["adherence"][done[key]], "same_run_as": done[key]}
                print(f"{label}: the same run as {done[key]!r}", flush=True)
                continue
            done[key] = label
            t = time.time()
            scores, _ = adherence(pipe, data, chosen, **settings)
            results["adherence"][label] = {**scores, "seconds": round(time.time() - t, 1)}
            print(f"{label}: top1 {scores['top1']:.1%} top5 {scores['top5']:.1%} ({time.time() - t:.0f} s)", flush=True)
        results["defaults"] = pipe.settings().__dict__ | {"schedule": str(pipe.settings().schedule)}
    if a.what in ("samples", "all"):
        folder = DEFAULT_WEIGHTS if a.weights is None else Path(a.weights) if Path(a.weights).is_dir() else Path(".")
        sheet = a.sheet or folder / "samples.png"
        sample_sheet(pipe).save(sheet)
        print(f"wrote {sheet}")
    results["seconds"] = round(time.time() - t0, 1)
    if a.out:
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(json.dumps(results, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
