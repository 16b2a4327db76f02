"""Fixed unmasking orders: which grid positions a sampler reveals first when the order is not the
model's confidence.

- Halton (Besnier et al., "Halton Scheduler for Masked Generative Image Transformer", ICLR 2025):
  the 2-D Halton sequence in bases 2 (row) and 3 (column), scaled to the grid and floored, with
  positions already visited skipped. Low-discrepancy: each step's picks spread evenly over the image
  and sit far from each other, so tokens decided together depend little on one another.
- Random: a uniformly random permutation, the baseline of MaskGIT's ablation of orders.

An order is a permutation of the flattened grid, long (B, N) with N = side * side, row-major
(position = row * side + column). `order_scores` turns it into the sampler's keep scores.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Optional

import torch

HALTON_BASES = (2, 3)  # row, column: the published construction's


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


__all__ = ["halton_order", "halton_orders", "random_orders", "order_scores", "HALTON_BASES"]
