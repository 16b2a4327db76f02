"""Named sampler rules: how a step draws tokens, scores them and counts the tokens left masked. Each
names a decode loop with `muse.sampling.decode`'s arguments and states (`decoder`); the stage runner
picks a stage's.

- "muse": MaskGIT's loop, `muse.sampling.decode` (top-k Gumbel-max draw with annealed temperature, keep
  noise `choice_temperature * (T-1-t)/T`, host-side counts).
- "amused": aMUSEd's `AmusedScheduler.step` (diffusers), draw for draw, so that the same
  `torch.Generator` gives the same ids as diffusers' aMUSEd pipelines: every position is drawn with
  `torch.multinomial` (the known ones too: the draw consumes the generator per position), the keep
  noise is Gumbel noise scaled by `torch.linspace(choice_temperature, 0, T)[t]` on log(p), and the
  counts are computed in aMUSEd's float32 arithmetic from the full sequence length times the starting
  mask ratio (region / N, aMUSEd's inpainting rule). Tokens below the count-th lowest score are masked
  again (ties keep fewer masked, as in aMUSEd).

The "amused" rules read `temperature` as a plain (not annealed) softmax temperature of the draw, and
`topk_filter_thres` as a top-k filter before it; at aMUSEd's values (1 and 0) both are skipped, which
keeps the arithmetic identical. There is no critic and no remasking of earlier choices in aMUSEd's rules.
"""

from __future__ import annotations

from typing import Callable, Iterator, Optional

import torch

from .sampling import NEVER_SCORE, CriticFn, DecodeState, LogitsFn, at_positions, decode, top_k_filter
from .schedules import get_schedule
from .settings import SAMPLERS, SamplerSettings

SAMPLER_RULES = SAMPLERS  # declared with the settings schema, which offers them as the `sampler` choice
# aMUSEd's clamps (diffusers' scheduling_amused.py): probabilities and Gumbel noise are floored at 1e-20.
TINY = 1e-20


def amused_gumbel_noise(like: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """aMUSEd's Gumbel noise, drawn exactly as diffusers draws it (`uniform_` on the generator's device):
    (B, N) -> (B, N)."""
    u = torch.zeros_like(like, device=generator.device).uniform_(0, 1, generator=generator).to(like.device)
    return -torch.log((-torch.log(u.clamp(TINY))).clamp(TINY))


def amused_mask_ratio(schedule, step: int, total: int, device: torch.device) -> torch.Tensor:
    """The schedule at progress (step + 1) / total as aMUSEd computes it: a float32 (1, 1) tensor.

    aMUSEd's cosine is cos(r * pi / 2) and its linear 1 - r on a float32 tensor r, which is what our
    `muse.schedules` functions compute on a tensor; a callable that only takes floats is evaluated in
    Python and rounded to float32."""
    ratio = (torch.tensor([[step]], device=device) + 1) / total  # int64 / int -> float32, as in diffusers
    fn = get_schedule(schedule)
    try:
        value = torch.as_tensor(fn(ratio), device=device)
        if value.shape != ratio.shape or not value.is_floating_point():
            raise TypeError
        return value.float()
    except (TypeError, ValueError):
        return torch.tensor([[float(fn(float(ratio)))]], device=device)


def amused_mask_len(schedule, step: int, total: int, seq_len: int, start_ratio: torch.Tensor,
                    masked: torch.Tensor) -> torch.Tensor:
    """Tokens to leave masked after 0-based `step` (not the last), aMUSEd's float32 rule:
    floor(seq_len * start_ratio * schedule), at most one fewer than masked now, at least one.

    start_ratio float32 (B, 1) (region / N), masked bool (B, N) -> float32 (B, 1)."""
    mask_ratio = start_ratio * amused_mask_ratio(schedule, step, total, masked.device)
    mask_len = (seq_len * mask_ratio).floor()
    mask_len = torch.min(masked.sum(dim=-1, keepdim=True) - 1, mask_len)
    return torch.max(torch.tensor([1], device=masked.device), mask_len)


def amused_draw(logits: torch.Tensor, temperature: float, topk_filter_thres: float,
                generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """aMUSEd's token draw: (B, N, V) logits -> (ids (B, N), probs (B, N, V)), one multinomial draw
    per position from softmax(logits / temperature) (argmax at temperature 0)."""
    if topk_filter_thres > 0:
        logits = top_k_filter(logits, topk_filter_thres)
    if temperature <= 0:
        probs = logits.softmax(dim=-1)
        return probs.argmax(dim=-1), probs
    probs = (logits if temperature == 1 else logits / temperature).softmax(dim=-1)
    flat = probs.to(generator.device).float().reshape(-1, probs.shape[-1])  # diffusers draws on the generator's device
    ids = torch.multinomial(flat, 1, generator=generator).to(probs.device)[:, 0].view(*probs.shape[:-1])
    return ids, probs


def amused_decode(logits_fn: LogitsFn, init_ids: torch.Tensor, region: torch.Tensor, mask_id: int,
                  settings: SamplerSettings, generator: torch.Generator,
                  critic_fn: Optional[CriticFn] = None) -> Iterator[DecodeState]:
    """`muse.sampling.decode` under aMUSEd's rules: fill `region` (bool (B, N)) of `init_ids` (long (B, N))
    in `settings.timesteps` steps, one `DecodeState` per step (grids (B, N)). They have no critic."""
    if critic_fn is not None:
        raise ValueError("aMUSEd's sampler rules have no token critic; use rules='muse' for a critic")
    total, n = settings.timesteps, init_ids.shape[1]
    region = region.bool()
    ids = torch.where(region, torch.full_like(init_ids, mask_id), init_ids)
    masked = region.clone()
    # aMUSEd's inpainting passes mask.sum() / numel as the starting ratio; text to image passes 1.0,
    # which N / N reproduces exactly (1.0 * x == x in float32).
    start_ratio = region.sum(dim=1, keepdim=True) / n  # float32 (B, 1)
    temperatures = torch.linspace(settings.choice_temperature, 0, total, device=ids.device)
    logits_at = at_positions(logits_fn)
    for step in range(total):
        # Every position, the known ones too: aMUSEd draws (and so consumes the generator) everywhere.
        logits = logits_at(ids, None)  # (B, N, V)
        pred, probs = amused_draw(logits, settings.temperature, settings.topk_filter_thres, generator)
        filled = torch.where(masked, pred, ids)
        selected = probs.gather(-1, filled[:, :, None])[:, :, 0]
        log_probs = torch.log(selected.clamp(TINY))
        if step == total - 1:  # aMUSEd's last step keeps every sample: no draw, nothing masked
            keep_noise = torch.zeros_like(log_probs)
            remask = torch.zeros_like(masked)
        else:
            mask_len = amused_mask_len(settings.schedule, step, total, n, start_ratio, masked)
            # Known positions get the largest confidence, as in aMUSEd, so they are never among the lowest.
            confidence = torch.log(torch.where(masked, selected, torch.finfo(selected.dtype).max).clamp(TINY))
            keep_noise = temperatures[step] * amused_gumbel_noise(selected, generator)
            confidence = confidence + keep_noise
            cut_off = confidence.sort(dim=-1).values.gather(1, mask_len.long())
            remask = confidence < cut_off
        scores = torch.where(masked, log_probs + keep_noise, torch.full_like(log_probs, NEVER_SCORE))
        nan = torch.full_like(log_probs, float("nan"))
        revealed = masked & ~remask
        state = DecodeState(step=step + 1, total=total, ids=torch.where(remask, torch.full_like(filled, mask_id), filled),
                            masked=remask, revealed=revealed, scores=scores, pred_ids=filled,
                            log_probs=torch.where(masked, log_probs, nan), critic_scores=None,
                            keep_noise=torch.where(masked, keep_noise, nan))
        ids, masked = state.ids, remask
        yield state


DecodeFn = Callable[..., Iterator[DecodeState]]  # `muse.sampling.decode`'s arguments and states
DECODERS: dict[str, DecodeFn] = {"muse": decode, "amused": amused_decode}


def decoder(rules: str) -> DecodeFn:
    """The decode loop of the named rules (one of `SAMPLER_RULES`)."""
    if rules not in DECODERS:
        raise ValueError(f"unknown sampler rules {rules!r}; choose one of {', '.join(SAMPLER_RULES)}")
    return DECODERS[rules]
