"""Mask schedules: the fraction of a region still masked at decoding progress r in [0, 1].

Every schedule maps r=0 -> 1 (all masked) and r=1 -> 0 (nothing masked) and decreases
in between. The sampler derives integer token counts from them with `num_masked`.
"""

from __future__ import annotations

import math
from typing import Callable, Union

import torch

Schedule = Callable[[float], float]
ScheduleLike = Union[str, Schedule]


# Each schedule takes a float or a tensor of progress values (training draws a batch of them).
def cosine(r: float) -> float:
    """MaskGIT's default: slow start, many tokens revealed late."""
    return torch.cos(r * math.pi / 2) if torch.is_tensor(r) else math.cos(r * math.pi / 2)


def linear(r: float) -> float:
    return 1.0 - r


def arccos(r: float) -> float:
    """MUSE/MaskGIT's arccos schedule (reveals more tokens early than cosine)."""
    return (torch.acos(r) if torch.is_tensor(r) else math.acos(r)) / (math.pi / 2)


def power(r: float, exponent: float = 2.0) -> float:
    """1 - r**exponent; exponent 2 is MaskGIT's 'square', 3 its 'cubic'."""
    return 1.0 - r**exponent


SCHEDULES: dict[str, Schedule] = {"cosine": cosine, "linear": linear, "arccos": arccos, "power": power}


def get_schedule(schedule: ScheduleLike) -> Schedule:
    """Resolve a schedule name (one of SCHEDULES) or pass a callable through."""
    if callable(schedule):
        return schedule
    if isinstance(schedule, str) and schedule in SCHEDULES:
        return SCHEDULES[schedule]
    raise ValueError(f"unknown schedule {schedule!r}; choose one of {sorted(SCHEDULES)} or pass a callable")


def _ratio(schedule: Schedule, r: float) -> float:
    value = float(schedule(r))
    if not math.isfinite(value):
        raise ValueError(f"schedule returned {value} at r={r}")
    return min(max(value, 0.0), 1.0)


def num_masked(schedule: ScheduleLike, step: int, total: int, region_size: int, prev_masked: int) -> int:
    """Tokens still masked after 0-based `step` of `total`, for a region of `region_size` tokens.

    MaskGIT's rule: floor(region_size * schedule((step + 1) / total)), but at least one token is
    revealed per step and one kept masked until the last step, which leaves none.
    """
    if step >= total - 1:
        return 0
    count = math.floor(region_size * _ratio(get_schedule(schedule), (step + 1) / total))
    count = max(min(count, prev_masked - 1), 1)
    return min(count, prev_masked)


def mask_counts(schedule: ScheduleLike, total: int, region_size: int) -> list[int]:
    """Masked tokens after each of `total` steps (the curve the playground plots)."""
    counts, prev = [], region_size
    for step in range(total):
        prev = num_masked(schedule, step, total, region_size, prev)
        counts.append(prev)
    return counts


def training_mask_ratio(schedule: ScheduleLike, batch: int, generator: torch.Generator) -> torch.Tensor:
    """Mask ratios for training, schedule(r) with r ~ U(0, 1), on the generator's device: (batch,)."""
    fn = get_schedule(schedule)
    r = torch.rand(batch, generator=generator, device=generator.device)
    try:
        ratio = torch.as_tensor(fn(r), dtype=torch.float32, device=r.device)
        if ratio.shape != r.shape:
            raise TypeError
    except (TypeError, ValueError):  # a user callable that only takes floats
        ratio = torch.tensor([_ratio(fn, float(x)) for x in r], device=r.device)
    return ratio.nan_to_num(1.0).clamp(0, 1)
