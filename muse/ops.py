"""Small tensor helpers shared by the networks, the sampler and the renderer."""

from __future__ import annotations

import torch


def l2norm(t: torch.Tensor) -> torch.Tensor:
    """Unit vectors along the last axis."""
    return torch.nn.functional.normalize(t, dim=-1)


def gather_positions(x: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """x (B, N, ...) at positions (B, M) -> (B, M, ...)."""
    index = positions.view(*positions.shape, *(1,) * (x.dim() - 2)).expand(-1, -1, *x.shape[2:])
    return x.gather(1, index)


def masked_positions(masked: torch.Tensor, count: int) -> torch.Tensor:
    """The positions of a bool (B, N) grid with `count` True per row, ascending: long (B, count).

    A stable sort instead of nonzero(): its output size is known, so the host never waits."""
    return (~masked).to(torch.uint8).argsort(dim=1, stable=True)[:, :count]


def token_cells(grid: torch.Tensor, factor: int) -> torch.Tensor:
    """A token grid (..., h, w) as pixels (..., h * factor, w * factor): each token covers a factor x factor cell."""
    return grid.repeat_interleave(factor, -2).repeat_interleave(factor, -1)
