"""The token-level stage runner: ids in, `DecodeState`s out.

A request's text is encoded once (`TextContext`); each stage's network is bound to it once, guidance
folded in (`bind_stage`), which gives a `Stage`: a logits function, a mask id, an optional critic and the
sampler's rules. `run_stage` decodes a token grid with any `Stage` by the decode loop its rules name
(`muse.sampler_rules.decoder`), so another model family runs through it by bringing its own logits
function and mask id. `run_stages` chains stages, each conditioned on the ids of the one
before (MUSE's base then super-res). Nothing here makes pixels: see `muse.render`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Optional, Sequence

import torch

from .guidance import GuidedCritic, GuidedLogits, guidance_context, is_guided
from .orders import resolve_order
from .sampler_rules import decoder
from .sampling import CriticFn, DecodeState, LogitsFn
from .settings import GenerationSettings, SamplerSettings
from .text import TextEncoder
from .transformer import MaskedTransformer, PreparedContext


@dataclass(frozen=True)
class Stage:
    """One decoding stage bound to a request: functions of the ids alone."""

    name: str
    logits_fn: LogitsFn
    mask_id: int
    critic_fn: Optional[CriticFn] = None
    rules: str = "muse"  # the sampler's rules (`muse.sampler_rules.SAMPLER_RULES`): aMUSEd's models use "amused"


def run_stage(stage: Stage, init_ids: torch.Tensor, region: torch.Tensor, settings: SamplerSettings,
              generator: torch.Generator) -> Iterator[DecodeState]:
    """Fill `region` (bool (B, h, w)) of `init_ids` (long (B, h, w)); states with (B, h, w) grids."""
    shape = init_ids.shape
    decode = decoder(stage.rules)
    for state in decode(stage.logits_fn, init_ids.flatten(1), region.flatten(1), stage.mask_id, settings,
                        generator, stage.critic_fn):
        yield state.reshape(*shape)


@dataclass(frozen=True)
class TextContext:
    """A request's encoded text, once: the prompts' rows and the unconditional rows of guidance (the
    negative prompts', or none: the null context), each repeated for the images per prompt."""

    embeds: torch.Tensor  # (B, L, text_dim)
    mask: torch.Tensor  # bool (B, L)
    null_embeds: torch.Tensor
    null_mask: torch.Tensor

    @classmethod
    def encode(cls, text_encoder: TextEncoder, prompts: list[str], negatives: Optional[list[str]], repeat: int,
               device: torch.device) -> "TextContext":
        """prompts (P) and negatives (P, or None: the null context) -> rows (P * repeat, ...), in one encoder
        call. Give negatives only when guidance runs them (`muse.guidance.is_guided`): they widen the batch."""
        embeds, mask = text_encoder(prompts + negatives if negatives is not None else prompts)
        embeds, mask = embeds.to(device), mask.to(device)
        b = len(prompts)
        cond_e, cond_m = embeds[:b], mask[:b]
        if negatives is not None:
            null_e, null_m = embeds[b:], mask[b:]
        else:  # the null context: nothing but the learned null key/value is attended
            null_e, null_m = torch.zeros_like(cond_e), torch.zeros_like(cond_m)
        return cls(*(t.repeat_interleave(repeat, 0) for t in (cond_e, cond_m, null_e, null_m)))

    def prepare(self, model: MaskedTransformer, cond_ids: Optional[torch.Tensor], cond_scale: float) -> PreparedContext:
        """The model's guided context at `cond_scale` (`muse.guidance.guidance_context`); cond_ids (B, h, w)
        or None. The unconditional rows are prepared only when guidance runs them."""
        ids = cond_ids.flatten(1) if cond_ids is not None and model.config.cond_seq_len else None
        cond = model.prepare_context(self.embeds, self.mask, ids)
        uncond = model.prepare_context(self.null_embeds, self.null_mask, ids) if is_guided(cond_scale) else cond
        return guidance_context(cond, uncond, cond_scale)


def bind_stage(name: str, text: TextContext, model: MaskedTransformer, critic: Optional[MaskedTransformer] = None,
               use_critic: bool = True, cond_ids: Optional[torch.Tensor] = None, *, cond_scale: float,
               guidance_schedule: str = "constant") -> Stage:
    """A MUSE transformer (and its critic, or its own critic head) as a `Stage` guided at `cond_scale`
    over the steps as `guidance_schedule` says (`muse.guidance.GUIDANCE_SCHEDULES`), contexts prepared once.

    The critic ranks the tokens when `use_critic` and there is one; otherwise the sampler ranks by the
    model's own confidence."""
    context = text.prepare(model, cond_ids, cond_scale)
    critic_fn = None
    if use_critic and critic is not None:
        # A critic that reads the guided log-probabilities has guidance in its input already, and was
        # trained on them with its own conditional context alone: it runs unguided, as it was trained.
        scale = 1.0 if critic.config.confidence_input else cond_scale
        critic_fn = GuidedCritic(critic, text.prepare(critic, cond_ids, scale), scale)
    elif use_critic and model.config.self_critic:
        critic_fn = GuidedCritic(model, context, cond_scale)
    return Stage(name, GuidedLogits(model, context, cond_scale, guidance_schedule), model.mask_id, critic_fn)


def has_critic(model: MaskedTransformer, critic: Optional[MaskedTransformer]) -> bool:
    """Whether a stage of this model can rank with a critic (`bind_stage`'s rule)."""
    return critic is not None or model.config.self_critic


@dataclass(frozen=True)
class StagePlan:
    """A stage of a request: its network, the known ids and the region to generate."""

    name: str
    model: MaskedTransformer
    critic: Optional[MaskedTransformer]
    known: torch.Tensor  # long (B, h, w); read outside the region only
    region: torch.Tensor  # bool (B, h, w): the tokens to generate


def run_stages(plans: Sequence[StagePlan], text: TextContext, settings: GenerationSettings, generator: torch.Generator,
               cond_ids: Optional[torch.Tensor] = None) -> Iterator[tuple[int, DecodeState]]:
    """Each plan in turn, conditioned on the previous stage's final ids (the first on `cond_ids`,
    (B, h, w) or None), guided at `settings.cond_scale`, ranking its tokens as `settings.order` (and
    `use_critic`) say (`muse.orders.resolve_order`): (stage index, state with (B, h, w) grids) for every step."""
    critic_ranks = resolve_order(settings.order, settings.use_critic, has_critic=True) == "critic"
    for index, plan in enumerate(plans):
        stage = bind_stage(plan.name, text, plan.model, plan.critic, critic_ranks, cond_ids,
                           cond_scale=settings.cond_scale, guidance_schedule=settings.guidance_schedule)
        state = None
        for state in run_stage(stage, plan.known, plan.region, settings, generator):
            yield index, state
        cond_ids = state.ids
