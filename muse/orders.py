"""Fixed unmasking orders: which grid positions a sampler reveals first when the order is not the
model's confidence.

- Halton (Besnier et al., "Halton Scheduler for Masked Generative Image Transformer", ICLR 2025):
  the 2-D Halton sequence in bases 2 (row) and 3 (column), scaled to the grid and floored, with
  positions already visited skipped. Low-discrepancy: each step's picks spread evenly over the image
  and sit far from each other, so tokens decided together depend little on one another.
- Random: a uniformly random permutation, the baseline of MaskGIT's ablation of orders.

An order is a permutation of the flattened grid, long (B, N) with N = side * side, row-major
(position = row * side + column). `order_scores` turns it into the sampler's keep scores, and
`fixed_order_scores` draws a request's (`muse.sampling.decode` reads the `order` setting).

The orders a request may rank tokens by are the settings schema's `ORDERS`: the model's confidence, the
token critic, and these two fixed ones. Under a fixed order the sampler still samples every masked
position at each step; the order only says which of the samples are kept.
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Optional

import torch

from .settings import ORDERS

HALTON_BASES = (2, 3)  # row, column: the published construction's
FIXED_ORDERS = ("halton", "random")  # the orders that do not look at the model's output
# The Halton sampler's softmax temperature ramp (valeoai/Halton-MaskGIT, sm_temp_min=1, sm_temp_max=1.2):
# the logits are multiplied by a factor rising linearly from 1 at the first step to 1.2 at the last, so
# later tokens are drawn a little colder; the temperature is not annealed to 0, as confidence sampling's is.
HALTON_INVERSE_TEMPERATURE = (1.0, 1.2)


def _van_der_corput(index: int, base: int) -> tuple[int, int]:
    """The index-th element (from 1) of base `base`'s radical-inverse sequence, as numerator and
    denominator: exact, so flooring it onto a grid never depends on float rounding."""
    num, den = 0, 1
    while index > 0:
        index, digit = divmod(index, base)
        num, den = num * base + digit, den * base
    return num, den


@lru_cache(maxsize=16)
def _halton_order(side: int) -> tuple[int, ...]:
    order, seen, index = [], set(), 0
    while len(order) < side * side:
        index += 1
        cell = []
        for base in HALTON_BASES:
            num, den = _van_der_corput(index, base)
            cell.append(num * side // den)
        position = cell[0] * side + cell[1]
        if position not in seen:  # a later point that floors onto a visited cell is skipped
            seen.add(position)
            order.append(position)
    return tuple(order)


def halton_order(side: int) -> torch.Tensor:
    """The Halton order of a side x side grid, long (side * side,): flat positions, first revealed first."""
    if side < 1:
        raise ValueError(f"side must be at least 1, got {side}")
    return torch.tensor(_halton_order(side), dtype=torch.long)


def halton_orders(side: int, batch: int, generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """One Halton order per row, long (B, N), each started at a random offset into the sequence (drawn
    from `generator`, one draw per row) as the paper's randomised sampler does, so images of one
    request do not all decide the same cells first. Without a generator every row starts at 0."""
    base = halton_order(side)
    if generator is None:
        return base.expand(batch, -1).clone()
    offsets = torch.randint(0, base.numel(), (batch,), generator=generator, device=generator.device).cpu()
    return torch.stack([torch.roll(base, int(offset)) for offset in offsets])


def random_orders(side: int, batch: int, generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """A uniformly random order per row, long (B, N), drawn from `generator`."""
    device = generator.device if generator is not None else None
    return torch.stack([torch.randperm(side * side, generator=generator, device=device).cpu()
                        for _ in range(batch)])


def order_scores(orders: torch.Tensor) -> torch.Tensor:
    """Keep scores from orders (B, N) -> float (B, N): higher for a position earlier in its row's order,
    so keeping the top-k among the masked positions reveals them in that order."""
    ranks = torch.empty_like(orders)
    ranks.scatter_(1, orders, torch.arange(orders.shape[1], device=orders.device).expand_as(orders))
    return -ranks.float()


def fixed_order_scores(order: str, batch: int, n: int, generator: Optional[torch.Generator] = None,
                       device: Optional[torch.device] = None) -> torch.Tensor:
    """A request's keep scores under a fixed order (one of `FIXED_ORDERS`) over a square grid of n tokens:
    float (B, n), drawn from `generator` (the Halton offsets, or the random permutations)."""
    side = math.isqrt(n)
    if side * side != n:
        raise ValueError(f"the {order} order needs a square token grid, got {n} tokens")
    if order == "halton":
        orders = halton_orders(side, batch, generator)
    elif order == "random":
        orders = random_orders(side, batch, generator)
    else:
        raise ValueError(f"{order!r} is not a fixed order; fixed orders: {', '.join(FIXED_ORDERS)}")
    return order_scores(orders).to(device)


def halton_temperature(temperature: float, step: int, total: int) -> float:
    """The sampling temperature of 0-based `step` of `total` under the Halton order: `temperature` divided
    by the ramp `HALTON_INVERSE_TEMPERATURE` (1 at the first step, 1.2 at the last)."""
    start, end = HALTON_INVERSE_TEMPERATURE
    ramp = start if total <= 1 else start + (end - start) * step / (total - 1)
    return temperature / ramp


def resolve_order(order: str, use_critic: bool, has_critic: bool) -> str:
    """The order a stage ranks its tokens by (one of `ORDERS`), from the request's `order` and `use_critic`
    and whether the stage has a token critic.

    `use_critic=True` is the older spelling of `order="critic"`: with the default order ("confidence") it
    puts the critic in charge where the stage has one, as it always did; an order named otherwise wins.
    A stage without a critic ranks by confidence (a pipeline refuses `order="critic"` outright when its
    first stage has none: `MusePipeline.check_order`)."""
    if order not in ORDERS:
        raise ValueError(f"order must be one of {', '.join(ORDERS)}, got {order!r}")
    if order == "confidence" and use_critic:
        order = "critic"
    if order == "critic" and not has_critic:
        return "confidence"
    return order


__all__ = ["halton_order", "halton_orders", "random_orders", "order_scores", "fixed_order_scores",
           "halton_temperature", "resolve_order", "HALTON_BASES", "HALTON_INVERSE_TEMPERATURE", "FIXED_ORDERS"]
