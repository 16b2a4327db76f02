"""Classifier-free guidance as one batched forward, turned into the sampler's functions.

The conditional and unconditional halves run as one (2B, ...) batch; the unconditional half is
the null context, or the negative prompt when one is given. `is_guided` decides whether it runs.
"""

from __future__ import annotations

from typing import Optional, Union

import torch

from .batching import TransformerCall, run_forward
from .settings import GUIDANCE_SCHEDULES
from .transformer import ForwardInputs, MaskedTransformer, PreparedContext


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


def combine(out: torch.Tensor, cond_scale: Union[float, torch.Tensor], uncond_first: bool = False,
            upcast: bool = True) -> torch.Tensor:
    """(2B, ...) -> null + (cond - null) * cond_scale: (B, ...); identity when not guided. cond_scale is
    one number, or one per row, float (B,), for rows that were guided (the caller has decided).

    The rows are [cond; null], or [null; cond] with `uncond_first` (aMUSEd's order). `upcast` computes in
    float32, as reduced-precision weights leave a small difference to scale up; without it the output's
    dtype is kept, as diffusers' aMUSEd computes."""
    if not torch.is_tensor(cond_scale) and not is_guided(cond_scale):
        return out
    cond, null = (out.float() if upcast else out).chunk(2)
    if uncond_first:
        cond, null = null, cond
    if torch.is_tensor(cond_scale):
        cond_scale = cond_scale.to(cond.dtype).view(-1, *[1] * (cond.dim() - 1))
    return null + (cond - null) * cond_scale


class GuidanceScale:
    """The scale of each call of a stage's guided function, as `schedule` (`GUIDANCE_SCHEDULES`) moves it:
    cond_scale, or under "fading" one per row, float (B,), from the share of the row's tokens masked
    (mask_id in ids (B, N)) against its count at the stage's first call."""

    def __init__(self, cond_scale: float, schedule: str, mask_id: int):
        if schedule not in GUIDANCE_SCHEDULES:
            raise ValueError(f"guidance schedule must be one of {', '.join(GUIDANCE_SCHEDULES)}, got {schedule!r}")
        self.cond_scale, self.schedule, self.mask_id = float(cond_scale), schedule, mask_id
        self.first_masked: Optional[torch.Tensor] = None

    def __call__(self, ids: torch.Tensor) -> Union[float, torch.Tensor]:
        if self.schedule == "constant" or not is_guided(self.cond_scale):
            return self.cond_scale
        masked = (ids == self.mask_id).flatten(1).sum(dim=1).float()
        if self.first_masked is None:
            self.first_masked = masked.clamp(min=1)
        return 1 + (self.cond_scale - 1) * masked / self.first_masked


class GuidedLogits:
    """ids (B, N) -> guided logits (B, N, V); carries the self-conditioning embedding between steps.

    Called with positions (B, M), it returns the logits there alone, (B, M, V), computing less (see
    `MaskedTransformer.forward`); a self-conditioned model needs every embedding, so it answers (B, N, V).
    """

    def __init__(self, model: MaskedTransformer, context: PreparedContext, cond_scale: float,
                 schedule: str = "constant"):
        self.model, self.context, self.cond_scale = model, context, float(cond_scale)
        self.scale = GuidanceScale(self.cond_scale, schedule, model.mask_id)
        self.self_cond_embed: Optional[torch.Tensor] = None
        self.repeat = 2 if is_guided(self.cond_scale) else 1  # guidance: conditional and unconditional rows

    def _forward(self, ids: torch.Tensor, positions: Optional[torch.Tensor] = None,
                 self_cond_embed: Optional[torch.Tensor] = None,
                 token_features: Optional[torch.Tensor] = None) -> tuple[torch.Tensor, torch.Tensor]:
        # Through the batcher when a `muse.batching.Batcher` runs this request: one pass with the other
        # requests' forwards of this network; else at once.
        inputs = ForwardInputs(ids, self.context, positions, self.repeat, token_features)
        return run_forward(TransformerCall(self.model, inputs, self_cond_embed))

    def __call__(self, ids: torch.Tensor, positions: Optional[torch.Tensor] = None) -> torch.Tensor:
        if self.model.config.self_cond:
            out, self.self_cond_embed = self._forward(ids, self_cond_embed=self.self_cond_embed)
        else:
            out, _ = self._forward(ids, positions)
        return combine(out, self.scale(ids))


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
