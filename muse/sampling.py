"""Step-wise parallel decoding (MaskGIT), as plain functions over tensors.

The network never samples: callers pass a `logits_fn(ids) -> logits` (guidance and text
conditioning already folded in) and optionally a `critic_fn(ids) -> scores`. `decode` is a
generator that yields one `DecodeState` per step; every random draw goes through the
`torch.Generator` it is given, so the same seed gives the same ids.
"""

from __future__ import annotations

import inspect
import math
from dataclasses import dataclass
from typing import Callable, Iterator, Optional

import torch

from .schedules import ScheduleLike, get_schedule, num_masked

# (B, N) ids -> (B, N, V) logits; or (ids, positions (B, M)) -> logits at those positions, (B, M, V) or (B, N, V)
LogitsFn = Callable[..., torch.Tensor]
CriticFn = Callable[..., torch.Tensor]  # (B, N) ids -> (B, N) "this token is wrong" scores; positions as LogitsFn

# Score of positions that cannot be remasked (known, or fixed earlier); finite so ranks stay well
# defined. Candidate scores are clamped to +-NEVER_SCORE / 2, so anything above that is this marker.
NEVER_SCORE = 1e9


@dataclass(frozen=True)
class SamplerSettings:
    """How to decode; names follow muse-maskgit-pytorch's `generate`."""

    timesteps: int = 12
    temperature: float = 1.0
    topk_filter_thres: float = 0.9
    schedule: ScheduleLike = "cosine"
    critic_noise_scale: float = 1.0
    choice_temperature: float = 4.5  # MaskGIT's Gumbel noise on the keep choice, annealed to 0
    can_remask_prev_masked: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.timesteps, int) or isinstance(self.timesteps, bool) or self.timesteps < 1:
            raise ValueError(f"timesteps must be a positive integer, got {self.timesteps!r}")
        for name in ("temperature", "critic_noise_scale", "choice_temperature"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
        thres = self.topk_filter_thres
        if not isinstance(thres, (int, float)) or not (0.0 <= thres < 1.0):
            raise ValueError(f"topk_filter_thres must be in [0, 1), got {thres!r}")
        get_schedule(self.schedule)


@dataclass(frozen=True)
class DecodeState:
    """The decoder after one step. Grids are (B, N) over the flattened token grid."""

    step: int  # 1-based index of the step just taken
    total: int
    ids: torch.Tensor  # long; mask_id where still masked
    masked: torch.Tensor  # bool; still masked after this step
    revealed: torch.Tensor  # bool; fixed by this step
    scores: torch.Tensor  # float; keep scores used to choose (higher = kept)
    # long; the model's sample wherever it was asked (every position masked before this step), ids elsewhere
    pred_ids: torch.Tensor


def gumbel_noise(shape: torch.Size | tuple, generator: torch.Generator, device: torch.device) -> torch.Tensor:
    """Standard Gumbel noise of `shape`, drawn from `generator`."""
    u = torch.rand(shape, generator=generator, device=device)
    return -torch.log(-torch.log(u.clamp(1e-20, 1.0 - 1e-7)))


def top_k_filter(logits: torch.Tensor, thres: float) -> torch.Tensor:
    """Keep the top ceil((1 - thres) * V) logits of the last axis, the rest -inf: (..., V)."""
    k = max(1, math.ceil((1.0 - thres) * logits.shape[-1]))
    if k >= logits.shape[-1]:
        return logits
    kth = logits.topk(k, dim=-1).values[..., -1:]
    return logits.masked_fill(logits < kth, float("-inf"))


def gumbel_sample(logits: torch.Tensor, temperature: float, generator: torch.Generator) -> torch.Tensor:
    """Sample ids from logits / temperature (argmax at temperature 0): (..., V) -> (...)."""
    if temperature <= 0:
        return logits.argmax(dim=-1)
    noise = gumbel_noise(logits.shape, generator, logits.device)
    return (logits / temperature + noise).argmax(dim=-1)


def top_k_sample(logits: torch.Tensor, thres: float, temperature: float, generator: torch.Generator) -> torch.Tensor:
    """`gumbel_sample(top_k_filter(logits, thres), temperature, generator)` without the full-vocabulary noise:
    the Gumbel-max draw runs over the k kept candidates only (same distribution, k/V of the work): (..., V) -> (...)."""
    k = max(1, math.ceil((1.0 - thres) * logits.shape[-1]))
    if temperature <= 0 or k >= logits.shape[-1]:
        return gumbel_sample(logits, temperature, generator)  # argmax, or nothing filtered
    values, indices = logits.topk(k, dim=-1, sorted=False)  # (..., k)
    choice = gumbel_sample(values, temperature, generator)
    return indices.gather(-1, choice.unsqueeze(-1)).squeeze(-1)


def select_remask(keep_scores: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    """Mark the `counts[b]` lowest-scored positions of each row: (B, N), (B,) -> bool (B, N)."""
    order = keep_scores.argsort(dim=-1, stable=True)
    ranks = torch.empty_like(order)
    ranks.scatter_(1, order, torch.arange(order.shape[1], device=order.device).expand_as(order))
    return ranks < counts[:, None]


def takes_positions(fn: Callable) -> bool:
    """Whether `fn` can be called as fn(ids, positions)."""
    try:
        inspect.signature(fn).bind(None, None)
    except (TypeError, ValueError):  # one-argument function, or a builtin without a signature
        return False
    return True


def gather_positions(x: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """x (B, N, ...) at positions (B, M) -> (B, M, ...)."""
    index = positions.view(*positions.shape, *(1,) * (x.dim() - 2)).expand(-1, -1, *x.shape[2:])
    return x.gather(1, index)


def masked_positions(masked: torch.Tensor, count: int) -> torch.Tensor:
    """The positions of a bool (B, N) grid with `count` True per row, ascending: long (B, count).

    A stable sort instead of nonzero(): its output size is known, so the host never waits."""
    return (~masked).to(torch.uint8).argsort(dim=1, stable=True)[:, :count]


def decode(
    logits_fn: LogitsFn,
    init_ids: torch.Tensor,
    region: torch.Tensor,
    mask_id: int,
    settings: SamplerSettings,
    generator: torch.Generator,
    critic_fn: Optional[CriticFn] = None,
) -> Iterator[DecodeState]:
    """Fill `region` (bool (B, N)) of `init_ids` (long (B, N)) in `settings.timesteps` steps.

    Positions outside the region are known and never change; the number still masked after each
    step follows the schedule, counted from each row's region size; the last step leaves none.

    Only the still-masked positions' logits are read (every region position's when
    `can_remask_prev_masked`). A `logits_fn` taking (ids, positions) is told which, as long (B, M),
    whenever every row has the same number masked (else positions is None), and may compute those alone;
    so is a `critic_fn` taking (ids, positions), whose scores are read at the same positions.
    """
    if init_ids.shape != region.shape or init_ids.dim() != 2:
        raise ValueError(f"init_ids {tuple(init_ids.shape)} and region {tuple(region.shape)} must both be (B, N)")
    total = settings.timesteps
    region = region.bool()
    ids = torch.where(region, torch.full_like(init_ids, mask_id), init_ids)
    masked = region.clone()
    # One host sync per request: the region sizes fix every step's count up front.
    sizes = region.sum(dim=1).tolist()
    prev = list(sizes)
    count_rows = []
    for step in range(total):
        prev = [num_masked(settings.schedule, step, total, n, p) for n, p in zip(sizes, prev)]
        count_rows.append(prev)
    counts_per_step = torch.tensor(count_rows, device=ids.device)  # (steps, B)
    n = ids.shape[1]
    logits_takes_positions = takes_positions(logits_fn)
    ask_positions = logits_takes_positions and not settings.can_remask_prev_masked
    critic_positions = critic_fn is not None and takes_positions(critic_fn)

    for step in range(total):
        before = sizes if step == 0 else count_rows[step - 1]  # masked per row now, known on the host
        positions = None
        if ask_positions and len(set(before)) == 1 and 0 < before[0] < n:
            positions = masked_positions(masked, before[0])  # (B, M)
        logits = (logits_fn(ids, positions) if logits_takes_positions else logits_fn(ids)).float()
        if positions is not None and logits.shape[1] != positions.shape[1]:  # it answered every position
            logits = gather_positions(logits, positions)
        remaining = (total - 1 - step) / total  # annealing factor, 0 at the last step
        pred = top_k_sample(logits, settings.topk_filter_thres, settings.temperature * remaining,
                            generator)  # (B, M), or (B, N)
        if positions is not None:
            filled = pred_ids = ids.scatter(1, positions, pred)
        else:
            filled, pred_ids = torch.where(masked, pred, ids), pred

        # Which positions may be masked again after this step.
        candidates = region if settings.can_remask_prev_masked else masked
        # The last step reveals every remaining position whatever the scores: no critic pass for it.
        if critic_fn is not None and step < total - 1:
            # Higher = more likely wrong; read at the candidates only, so asked there alone when it can be.
            critic = (critic_fn(filled, positions) if critic_positions else critic_fn(filled)).float()
            if positions is not None and critic.shape[1] != positions.shape[1]:  # (B, N): read the (B, M)
                critic = gather_positions(critic, positions)
            noise = torch.rand(critic.shape, generator=generator, device=critic.device) - 0.5
            keep = -(critic + noise * settings.critic_noise_scale * remaining)
        else:
            chosen = pred if positions is not None else filled  # the sampled id at each logits row
            log_probs = logits.log_softmax(dim=-1).gather(-1, chosen[..., None]).squeeze(-1)
            noise = gumbel_noise(log_probs.shape, generator, log_probs.device)
            keep = log_probs + noise * settings.choice_temperature * remaining
        keep = torch.nan_to_num(keep, nan=-NEVER_SCORE, posinf=NEVER_SCORE, neginf=-NEVER_SCORE).clamp(-NEVER_SCORE / 2, NEVER_SCORE / 2)
        if positions is not None:  # scores of the candidates (the masked positions) alone: scatter them
            keep = torch.full_like(ids, NEVER_SCORE, dtype=keep.dtype).scatter(1, positions, keep)
        else:
            keep = torch.where(candidates, keep, torch.full_like(keep, NEVER_SCORE))

        remask = select_remask(keep, counts_per_step[step]) & candidates
        new_ids = torch.where(remask, torch.full_like(filled, mask_id), filled)
        revealed = masked & ~remask
        masked = remask
        ids = new_ids
        yield DecodeState(step=step + 1, total=total, ids=ids, masked=masked, revealed=revealed,
                          scores=keep, pred_ids=pred_ids)
