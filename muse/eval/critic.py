"""The critic's question, asked of the critic and of the generator's confidence: which sampled tokens are wrong."""

from __future__ import annotations

import random
from typing import Optional

import torch
import torch.nn.functional as F

from ..data import CaptionedImages
from ..data.captions import exact_name


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
def critic_ranking(pipe, data: CaptionedImages, count: int = 256, seed: int = 0, batch: int = 32,
                   cond_scale: Optional[float] = None) -> dict[str, dict]:
    """How well each stage's critic spots the generator's wrong tokens, against the generator's own
    confidence (what the sampler ranks by without a critic).

    `count` fixed dataset images are tokenized (32 px for the base stage, 64 px for super-res, with its
    32 px ids as conditioning) and captioned with their exact names. A cosine-schedule share of each grid
    is masked, the generator samples the masked tokens as the critics are trained to see them
    (`muse.train.losses.sample_for_critic`), and a sampled token is wrong where it differs from the image's.
    Per stage: the AUC of the critic's score and of the negative log-probability of the sampled token,
    over the sampled tokens. The generator samples under guidance at `cond_scale` (default: the
    pipeline's), as the sampler's does; the critic reads its conditional context, and a
    `confidence_input` critic the log-probabilities too."""
    from ..train.losses import guided_logits, random_mask, sample_for_critic

    scale = pipe.settings().cond_scale if cond_scale is None else cond_scale
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
            logits = guided_logits(model, x, embeds, mask, cond, scale).float()
            sampled = sample_for_critic(logits, gen)
            filled = torch.where(masked, sampled, ids)
            log_probs = logits.log_softmax(-1).gather(-1, sampled[..., None]).squeeze(-1)
            features = torch.where(masked, log_probs, torch.zeros_like(log_probs))
            scores, _ = critic(filled, critic.prepare_context(embeds, mask, cond),
                               token_features=features if critic.config.confidence_input else None)
            critic_scores.append(scores.float()[masked].cpu())
            neg_log_probs.append(-log_probs[masked].cpu())
            wrong.append((sampled != ids)[masked].cpu())
        flags = torch.cat(wrong)
        out[name] = {"critic_auc": ranking_auc(torch.cat(critic_scores), flags),
                     "confidence_auc": ranking_auc(torch.cat(neg_log_probs), flags),
                     "wrong_share": flags.float().mean().item(), "sampled_tokens": len(flags), "images": len(picks),
                     "cond_scale": scale}
    return out


__all__ = ["ranking_auc", "critic_ranking"]
