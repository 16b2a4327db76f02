"""Step-wise parallel decoding (MaskGIT), as plain functions over tensors.

The network never samples: callers pass a `logits_fn(ids, positions) -> logits` (guidance and text
conditioning already folded in; see `LogitsFn`) and optionally a `critic_fn` of the same form. `decode` is a
generator that yields one `DecodeState` per step; every random draw goes through the
`torch.Generator` it is given, so the same seed gives the same ids.
"""

from __future__ import annotations

import inspect
import math
from dataclasses import dataclass, replace
from typing import Callable, Iterator, Optional, Protocol

import torch

from .ops import gather_positions, masked_positions
from .orders import FIXED_ORDERS, fixed_order_scores, halton_temperature
from .schedules import num_masked
from .settings import SamplerSettings


class LogitsFn(Protocol):
    """(B, N) ids -> (B, N, V) logits. Given positions (B, M) it may answer at those alone, (B, M, V).

    Guidance and conditioning are folded in (`muse.guidance`); a plain one-argument function of the
    ids qualifies too (`at_positions` adapts it)."""

    def __call__(self, ids: torch.Tensor, positions: Optional[torch.Tensor] = None) -> torch.Tensor: ...


class CriticFn(Protocol):
    """(B, N) ids -> (B, N) "this token is wrong" scores; at positions (B, M), (B, M) as LogitsFn.

    A critic that takes a third argument is also handed log_probs (B, N): the logits function's
    log-probability of each token just sampled, 0 at the others (what confidence sampling ranks by)."""

    def __call__(self, ids: torch.Tensor, positions: Optional[torch.Tensor] = None,
                 log_probs: Optional[torch.Tensor] = None) -> torch.Tensor: ...


# Score of positions that cannot be remasked (known, or fixed earlier); finite so ranks stay well
# defined. Candidate scores are clamped to +-NEVER_SCORE / 2, so anything above that is this marker.
NEVER_SCORE = 1e9


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
    # What the keep score is made of, NaN where the sampler did not choose (known or fixed earlier):
    # keep score = log_probs + keep_noise without a critic pass, -critic_scores + keep_noise with one.
    log_probs: Optional[torch.Tensor] = None  # float; the model's log-probability of its sampled token
    critic_scores: Optional[torch.Tensor] = None  # float; the critic's "token is wrong" logit; None: no critic pass
    keep_noise: Optional[torch.Tensor] = None  # float; the random term added to the keep score
    # What ranked the tokens (`muse.settings.ORDERS`): "confidence", "critic", or a fixed order ("halton",
    # "random"), under which the keep score is minus the position's rank in the order and has no noise.
    ranking: str = "confidence"

    def reshape(self, *shape: int) -> "DecodeState":
        """The same state with every grid viewed as `shape`, e.g. (B, h, w)."""
        return replace(self, **{k: getattr(self, k).view(*shape) for k in GRIDS if getattr(self, k) is not None})


GRIDS = ("ids", "masked", "revealed", "scores", "pred_ids", "log_probs", "critic_scores", "keep_noise")


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


def _takes(fn: Callable, count: int) -> bool:
    """Whether `fn` can be called with `count` positional arguments."""
    try:
        inspect.signature(fn).bind(*[None] * count)
    except (TypeError, ValueError):  # fewer parameters, or a builtin without a signature
        return False
    return True


def at_positions(fn: Callable[..., torch.Tensor]) -> Callable[..., torch.Tensor]:
    """Adapt a logits or critic function to the sampler's one call: (ids, positions[, log_probs]) -> float32
    output at `positions` (B, M, ...) when given, else at every position (B, N, ...).

    A function that takes positions is told them and may compute there alone; a one-argument function,
    or one that answers every position anyway (a self-conditioned model), is read at them. log_probs
    reaches a function that takes a third argument (`CriticFn`)."""
    takes, takes_log_probs = _takes(fn, 2), _takes(fn, 3)

    def call(ids: torch.Tensor, positions: Optional[torch.Tensor],
             log_probs: Optional[torch.Tensor] = None) -> torch.Tensor:
        if takes_log_probs:
            out = fn(ids, positions, log_probs)
        else:
            out = fn(ids, positions) if takes else fn(ids)
        out = out.float()
        if positions is not None and out.shape[1] != positions.shape[1]:
            out = gather_positions(out, positions)
        return out

    return call


@dataclass(frozen=True)
class Candidates:
    """The positions a step samples and ranks. When every row has the same number masked they are asked
    for by index, `positions` long (B, M), so the functions may compute there alone; otherwise
    `positions` is None and every position of the grid is computed, `where` marking the candidates."""

    where: torch.Tensor  # bool (B, N)
    positions: Optional[torch.Tensor] = None  # long (B, M), or None: every position

    def at(self, grid: torch.Tensor) -> torch.Tensor:
        """A (B, N) grid's values at the candidates: (B, M) by index, else the grid itself."""
        return grid if self.positions is None else grid.gather(1, self.positions)

    @classmethod
    def of(cls, masked: torch.Tensor, region: torch.Tensor, counts: list[int], remask: bool) -> "Candidates":
        """This step's candidates: the masked positions (bool (B, N)), `counts` of them in each row (known
        on the host), or every region position (bool (B, N)) when earlier choices may be remasked."""
        if remask:
            return cls(region)
        if len(set(counts)) == 1 and 0 < counts[0] < masked.shape[1]:
            return cls(masked, masked_positions(masked, counts[0]))
        return cls(masked)

    def fill(self, ids: torch.Tensor, masked: torch.Tensor, pred: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The step's sample `pred` ((B, M) at the positions, else (B, N)) written into ids (B, N) where
        `masked` (bool (B, N)): the filled ids, and the model's prediction grid (by index: the ids elsewhere)."""
        if self.positions is not None:
            filled = ids.scatter(1, self.positions, pred)
            return filled, filled
        return torch.where(masked, pred, ids), pred

    def on_grid(self, values: torch.Tensor, elsewhere: float) -> torch.Tensor:
        """Values at the candidates ((B, M), or (B, N)) as a (B, N) grid, `elsewhere` at the other positions."""
        rest = torch.full(self.where.shape, elsewhere, dtype=values.dtype, device=values.device)
        if self.positions is not None:
            return rest.scatter(1, self.positions, values)
        return torch.where(self.where, values, rest)


def step_counts(settings: SamplerSettings, region: torch.Tensor) -> list[list[int]]:
    """How many positions each row has masked before the first step and after each: (steps + 1, B) on
    the host, counted from each row's region size (bool (B, N)). One host sync per request: the sizes fix
    every count."""
    sizes = region.sum(dim=1).tolist()
    counts, prev = [sizes], sizes
    for step in range(settings.timesteps):
        prev = [num_masked(settings.schedule, step, settings.timesteps, n, p) for n, p in zip(sizes, prev)]
        counts.append(prev)
    return counts


def keep_scores(log_probs: torch.Tensor, critic: Optional[torch.Tensor], settings: SamplerSettings,
                remaining: float, generator: torch.Generator,
                order: Optional[torch.Tensor] = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The keep scores (higher = kept) of a step's candidates and the random term in them, both shaped
    as log_probs: the model's confidence plus annealed Gumbel noise (MaskGIT), or with a critic's
    "token is wrong" scores, their negation less annealed uniform noise (MUSE), or under a fixed order
    (`order`, the candidates' order scores) those scores and no noise."""
    if order is not None:
        return order, torch.zeros_like(order)
    if critic is None:
        noise = gumbel_noise(log_probs.shape, generator, log_probs.device) * settings.choice_temperature * remaining
        return log_probs + noise, noise
    noise = (torch.rand(critic.shape, generator=generator, device=critic.device) - 0.5) \
        * settings.critic_noise_scale * remaining
    return -(critic + noise), -noise


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

    Only the still-masked positions are sampled (every region position when `can_remask_prev_masked`).
    Whenever every row has the same number masked, both functions are asked at those positions,
    long (B, M), through `at_positions`; a function that takes them may compute there alone.

    `settings.order` says which samples a step keeps: the likeliest ("confidence"; the critic's ranking
    instead whenever a `critic_fn` is given), or a fixed order ("halton", "random", `muse.orders`) drawn
    from `generator` before the first step, under which `critic_fn` is not called. Under the Halton order
    the sampling temperature follows the paper's ramp (`muse.orders.halton_temperature`) instead of
    MaskGIT's annealing to 0.

    These are MaskGIT's rules; `muse.sampler_rules` names them and the others (aMUSEd's).
    """
    if init_ids.shape != region.shape or init_ids.dim() != 2:
        raise ValueError(f"init_ids {tuple(init_ids.shape)} and region {tuple(region.shape)} must both be (B, N)")
    total = settings.timesteps
    region = region.bool()
    ids = torch.where(region, torch.full_like(init_ids, mask_id), init_ids)
    masked = region.clone()
    counts = step_counts(settings, region)  # counts[step]: masked per row before that step, (steps + 1, B)
    counts_after = torch.tensor(counts[1:], device=ids.device)  # (steps, B)
    logits_at = at_positions(logits_fn)
    fixed = settings.order in FIXED_ORDERS
    order = fixed_order_scores(settings.order, *ids.shape, generator, ids.device) if fixed else None  # (B, N)
    critic_at = at_positions(critic_fn) if critic_fn is not None and not fixed else None
    ranking = settings.order if fixed else "critic" if critic_at is not None else "confidence"

    for step in range(total):
        candidates = Candidates.of(masked, region, counts[step], settings.can_remask_prev_masked)
        logits = logits_at(ids, candidates.positions)  # (B, M, V), or (B, N, V)
        remaining = (total - 1 - step) / total  # annealing factor, 0 at the last step
        temperature = halton_temperature(settings.temperature, step, total) if settings.order == "halton" \
            else settings.temperature * remaining
        pred = top_k_sample(logits, settings.topk_filter_thres, temperature, generator)
        filled, pred_ids = candidates.fill(ids, masked, pred)

        # The model's log-probability of its sample is kept with a critic too (no random draw: the ids
        # stay those of the same seed). The last step reveals every remaining position whatever the
        # scores: no critic pass for it.
        chosen = pred if candidates.positions is not None else filled  # the sampled id at each logits row
        log_probs = logits.log_softmax(dim=-1).gather(-1, chosen[..., None]).squeeze(-1)
        log_probs_grid = candidates.on_grid(log_probs, float("nan"))
        critic = None
        if critic_at is not None and step < total - 1:
            # higher = more likely wrong; the critic reads 0 where nothing was sampled
            critic = critic_at(filled, candidates.positions, log_probs_grid.nan_to_num(0.0))
        keep, noise = keep_scores(log_probs, critic, settings, remaining, generator,
                                  candidates.at(order) if fixed else None)
        keep = torch.nan_to_num(keep, nan=-NEVER_SCORE, posinf=NEVER_SCORE, neginf=-NEVER_SCORE)
        keep = candidates.on_grid(keep.clamp(-NEVER_SCORE / 2, NEVER_SCORE / 2), NEVER_SCORE)

        remask = select_remask(keep, counts_after[step]) & candidates.where
        revealed = masked & ~remask
        ids, masked = torch.where(remask, torch.full_like(filled, mask_id), filled), remask
        yield DecodeState(step=step + 1, total=total, ids=ids, masked=masked, revealed=revealed,
                          scores=keep, pred_ids=pred_ids, log_probs=log_probs_grid,
                          critic_scores=None if critic is None else candidates.on_grid(critic, float("nan")),
                          keep_noise=candidates.on_grid(noise, float("nan")), ranking=ranking)
