"""Fixed unmasking orders (muse.orders): the Halton order equals the published construction."""

import hashlib

import pytest
import torch

from muse.orders import halton_order, halton_orders, order_scores, random_orders

# valeoai/Halton-MaskGIT's `HaltonSampler.build_halton_mask(8)` (10,000 points, bases 2 and 3,
# duplicates dropped in first-seen order), as flat row-major positions row * 8 + column.
PUBLISHED_8 = [34, 21, 48, 11, 46, 25, 60, 7, 32, 18, 53, 9, 43, 30, 58, 4, 39, 16, 51, 13, 41, 28, 62, 2, 37, 23,
               10, 45, 24, 59, 6, 33, 20, 55, 8, 29, 57, 3, 38, 52, 15, 40, 27, 1, 36, 22, 50, 47, 5, 19, 54, 44,
               31, 56, 17, 14, 42, 63, 0, 35, 49, 12, 26, 61]
# The same for 16 x 16: its first 20 positions and the SHA-256 of the whole list's Python repr.
PUBLISHED_16_HEAD = [133, 74, 193, 39, 172, 99, 232, 30, 144, 85, 219, 50, 183, 125, 244, 9, 142, 65, 198, 43]
PUBLISHED_16_SHA = "a1ce0bdb22d74fa5"


def test_halton_order_equals_the_published_construction_on_8x8_and_16x16():
    assert halton_order(8).tolist() == PUBLISHED_8
    order16 = halton_order(16).tolist()
    assert order16[:20] == PUBLISHED_16_HEAD
    assert hashlib.sha256(str(order16).encode()).hexdigest()[:16] == PUBLISHED_16_SHA


@pytest.mark.parametrize("side", [1, 3, 8, 16, 24, 32, 64])
def test_halton_order_is_a_permutation_of_the_grid(side):
    """Every cell exactly once, including sides that are not powers of two and grids past the 10,000
    points the published code draws."""
    assert sorted(halton_order(side).tolist()) == list(range(side * side))


def test_halton_spreads_each_steps_picks_more_evenly_than_random():
    """What the order is for: the first 16 picks of a 16x16 grid cover 14 of its 16 4x4 blocks; a
    random order covers about 10 (16 * (1 - (15/16)^16))."""
    def blocks(order):
        first = order[:16]
        return len({(int(p) // 16 // 4, int(p) % 16 // 4) for p in first})

    assert blocks(halton_order(16)) >= 14
    g = torch.Generator().manual_seed(0)
    assert sum(blocks(random_orders(16, 1, g)[0]) for _ in range(20)) / 20 < 12


def test_halton_rows_start_at_their_own_offset_and_the_seed_decides_it():
    g = torch.Generator().manual_seed(3)
    orders = halton_orders(16, 4, g)
    base = halton_order(16)
    assert orders.shape == (4, 256)
    for row in orders:
        shift = (256 - int(torch.nonzero(row == base[0]))) % 256  # the row is the sequence rolled on
        assert torch.equal(row, torch.roll(base, -shift))
    assert len({tuple(r.tolist()) for r in orders}) > 1
    assert torch.equal(orders, halton_orders(16, 4, torch.Generator().manual_seed(3)))
    assert torch.equal(halton_orders(8, 2), base[:0].new_tensor(PUBLISHED_8).expand(2, -1))


def test_random_orders_are_permutations_from_the_generator():
    a = random_orders(8, 3, torch.Generator().manual_seed(1))
    assert all(sorted(r.tolist()) == list(range(64)) for r in a)
    assert torch.equal(a, random_orders(8, 3, torch.Generator().manual_seed(1)))
    assert not torch.equal(a, random_orders(8, 3, torch.Generator().manual_seed(2)))


def test_order_scores_rank_positions_by_their_place_in_the_order():
    orders = torch.tensor([[2, 0, 3, 1], [0, 1, 2, 3]])
    scores = order_scores(orders)
    assert scores.tolist() == [[-1.0, -3.0, 0.0, -2.0], [0.0, -1.0, -2.0, -3.0]]
    # keeping the top 2 among all positions keeps the first two of each order
    top = scores.topk(2, dim=1).indices.sort(dim=1).values
    assert top.tolist() == [[0, 2], [0, 1]]
