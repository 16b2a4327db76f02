"""Classifier-free guidance as one batched forward, turned into the sampler's functions.

The conditional and unconditional halves run as one (2B, ...) batch; the unconditional half is
the null context, or the negative prompt when one is given. `is_guided` decides whether it runs.
"""

from __future__ import annotations

from typing import Optional

import torch

from .transformer import MaskedTransformer, PreparedContext


def is_guided(cond_scale: float) -> bool:
    """Whether guidance at `cond_scale` runs unconditional rows: at 1, null + (cond - null) * 1 is cond."""
    return cond_scale != 1


def guidance_context(cond: PreparedContext, uncond: PreparedContext, cond_scale: float) -> PreparedContext:
    """The context the guided functions run on: (B) rows, or (2B) when an unconditional half is needed.

    A null unconditional half (no text, no conditioning ids) attends only the null key: it is kept
    as `null_rows`, which the cross-attention answers with a constant instead of computing it.
    """
    if not is_guided(cond_scale):
        return cond
    if uncond.batch == cond.batch and uncond.is_null:
        return PreparedContext(cond.kv, cond.mask, null_rows=uncond.batch, spatial=cond.spatial)
    return PreparedContext.cat([cond, uncond])


def combine(out: torch.Tensor, cond_scale: float, uncond_first: bool = False, upcast: bool = True) -> torch.Tensor:
    """(2B, ...) -> null + (cond - null) * cond_scale: (B, ...); identity when not guided.

    The rows are [cond; null], or [null; cond] with `uncond_first` (aMUSEd's order). `upcast` computes in
    float32, as reduced-precision weights leave a small difference to scale up; without it the output's
    dtype is kept, as diffusers' aMUSEd computes."""
    if not is_guided(cond_scale):
        return out
    cond, null = (out.float() if upcast else out).chunk(2)
    if uncond_first:
        cond, null = null, cond
    return null + (cond - null) * cond_scale


class GuidedLogits:
    """ids (B, N) -> guided logits (B, N, V); carries the self-conditioning embedding between steps.

    Called with positions (B, M), it returns the logits there alone, (B, M, V), computing less (see
    `MaskedTransformer.forward`); a self-conditioned model needs every embedding, so it answers (B, N, V).
    """

    def __init__(self, model: MaskedTransformer, context: PreparedContext, cond_scale: float):
        self.model, self.context, self.cond_scale = model, context, float(cond_scale)
        self.self_cond_embed: Optional[torch.Tensor] = None
        self.repeat = 2 if is_guided(self.cond_scale) else 1  # guidance: conditional and unconditional rows

    def _forward(self, ids: torch.Tensor, positions: Optional[torch.Tensor] = None,
                 self_cond_embed: Optional[torch.Tensor] = None,
                 token_features: Optional[torch.Tensor] = None) -> tuple[torch.Tensor, torch.Tensor]:
        return self.model(ids, self.context, self_cond_embed=self_cond_embed, positions=positions,
                          repeat=self.repeat, token_features=token_features)

    def __call__(self, ids: torch.Tensor, positions: Optional[torch.Tensor] = None) -> torch.Tensor:
        if self.model.config.self_cond:
            out, self.self_cond_embed = self._forward(ids, self_cond_embed=self.self_cond_embed)
        else:
            out, _ = self._forward(ids, positions)
        return combine(out, self.cond_scale)


class GuidedCritic(GuidedLogits):
    """ids (B, N) -> guided "this token is wrong" scores (B, N), from a TokenCritic or a self-critic head."""

    def __call__(self, ids: torch.Tensor, positions: Optional[torch.Tensor] = None,
                 log_probs: Optional[torch.Tensor] = None) -> torch.Tensor:
        """ids (B, N) -> scores (B, N), or (B, M) at positions (B, M). log_probs (B, N): the generator's
        log-probability of each token (0 where known), which a `confidence_input` critic reads."""
        features = log_probs if self.model.config.confidence_input else None
        out, embed = self._forward(ids, positions, token_features=features)
        if self.model.config.kind == "generator":
            out = self.model.critic_scores(embed)
        return combine(out, self.cond_scale)
