"""Why guidance does or does not change an image: how far the caption moves the base stage's prediction.

Classifier-free guidance samples from null + (cond - null) * cond_scale. It can only change what is
drawn where the conditional and unconditional predictions differ; where the caption already makes the
conditional prediction certain, scaling the difference changes little either. This measures both, on
the first step of decoding (every token masked, where the caption alone decides) and half way (half
the tokens known, drawn from the named image).
"""

from __future__ import annotations

import random

import torch
import torch.nn.functional as F

from ..data import CaptionedImages
from ..data.captions import exact_name

STATES = {"all masked": 1.0, "half masked": 0.5}


@torch.no_grad()
def guidance_gap(pipe, data: CaptionedImages, count: int = 200, seed: int = 0,
                 scales: tuple[float, ...] = (3.0, 8.0)) -> dict[str, dict[str, float]]:
    """Per decoding state, over `count` fixed base-form images under their exact names:

    - `kl_cond_null`: mean KL(conditional || unconditional) per masked token, in nats;
    - `entropy_cond` / `entropy_null`: mean entropy of each prediction, in nats;
    - `target_prob_cond` / `target_prob_null`: mean probability of the image's true token;
    - `top1_changed_at_S`: share of masked tokens whose most likely id differs between the conditional
      prediction and the guided one at scale S;
    - `target_prob_at_S`: mean probability of the true token under guidance at scale S.
    """
    model, vq = pipe.base_model, pipe.vq
    toneless = [i for i, r in enumerate(data.records) if "name" in r and not r.get("skin_tone")]
    picks = sorted(random.Random(seed).sample(toneless, min(count, len(toneless))))
    gen = torch.Generator().manual_seed(seed)
    out: dict[str, dict[str, float]] = {}
    for state, ratio in STATES.items():
        sums: dict[str, float] = {}
        tokens = 0
        for start in range(0, len(picks), 32):
            chunk = picks[start:start + 32]
            images = torch.from_numpy(data.images[chunk]).permute(0, 3, 1, 2).float().div(255).to(pipe.device)
            ids = vq.encode(F.avg_pool2d(images, 2)).flatten(1)
            b, n = ids.shape
            ranks = torch.rand(b, n, generator=gen).argsort(-1).argsort(-1).to(ids.device)
            masked = ranks < max(1, round(ratio * n))
            x = torch.where(masked, torch.full_like(ids, model.mask_id), ids)
            embeds, mask = pipe.text_encoder([exact_name(data.records[i]) for i in chunk])
            embeds, mask = embeds.to(pipe.device), mask.to(pipe.device)
            cond, _ = model(x, model.prepare_context(embeds, mask))
            null, _ = model(x, model.prepare_context(torch.zeros_like(embeds), torch.zeros_like(mask)))
            cond, null = cond.float()[masked], null.float()[masked]  # (T, V) at the masked tokens
            target = ids[masked]
            lc, ln = cond.log_softmax(-1), null.log_softmax(-1)
            row = {"kl_cond_null": (lc.exp() * (lc - ln)).sum(-1),
                   "entropy_cond": -(lc.exp() * lc).sum(-1), "entropy_null": -(ln.exp() * ln).sum(-1),
                   "target_prob_cond": lc.exp().gather(-1, target[:, None]).squeeze(-1),
                   "target_prob_null": ln.exp().gather(-1, target[:, None]).squeeze(-1)}
            for s in scales:
                guided = (null + (cond - null) * s).log_softmax(-1)
                row[f"top1_changed_at_{s:g}"] = (guided.argmax(-1) != cond.argmax(-1)).float()
                row[f"target_prob_at_{s:g}"] = guided.exp().gather(-1, target[:, None]).squeeze(-1)
            for key, values in row.items():
                sums[key] = sums.get(key, 0.0) + float(values.sum())
            tokens += int(masked.sum())
        out[state] = {key: value / tokens for key, value in sums.items()} | {"tokens": tokens, "images": len(picks)}
    return out


__all__ = ["STATES", "guidance_gap"]
