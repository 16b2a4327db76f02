"""Unmasking orders (muse.orders): the Halton order equals the published construction; the sampler under
each order keeps known tokens, follows the schedule, honours the region and repeats itself for a seed."""

import hashlib

import pytest
import torch

from muse.orders import halton_order, halton_orders, halton_temperature, order_scores, random_orders, resolve_order
from muse.sampling import decode
from muse.schedules import mask_counts
from muse.settings import SamplerSettings

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


# ----- the sampler under each order (fake logits) ------------------------------------------------------

V, MASK = 50, 50
ORDER_NAMES = ("confidence", "critic", "halton", "random")


def fake_logits(ids: torch.Tensor) -> torch.Tensor:
    """(B, N) -> (B, N, V): fixed per position, a little moved by how many tokens are known."""
    table = torch.randn(ids.shape[1], V, generator=torch.Generator().manual_seed(0)) * 3
    return table.expand(ids.shape[0], -1, -1) + (ids != MASK).float().sum(1)[:, None, None] * 0.01


def fake_critic(ids: torch.Tensor) -> torch.Tensor:
    """(B, N) -> (B, N) "wrong" scores: a fixed ranking unlike the confidence one."""
    return torch.randn(ids.shape[1], generator=torch.Generator().manual_seed(9)).expand(ids.shape[0], -1).clone()


def decode_with(order, init=None, region=None, seed=0, steps=6, b=3, n=64, calls=None, **settings):
    init = torch.zeros(b, n, dtype=torch.long) if init is None else init
    region = torch.ones(b, n, dtype=torch.bool) if region is None else region

    def critic(ids):
        if calls is not None:
            calls.append(1)
        return fake_critic(ids)

    s = SamplerSettings(timesteps=steps, order=order, **settings)
    return list(decode(fake_logits, init, region, MASK, s, torch.Generator().manual_seed(seed),
                       critic if order == "critic" else None))


@pytest.mark.parametrize("order", ORDER_NAMES)
def test_every_order_follows_the_schedule_keeps_known_tokens_and_honours_the_region(order):
    gen = torch.Generator().manual_seed(3)
    init = torch.randint(0, V, (3, 64), generator=gen)
    region = torch.rand(3, 64, generator=gen) < 0.5
    region[2] = False
    region[2, :7] = True  # rows with different region sizes
    states = decode_with(order, init=init, region=region, steps=8)
    for s in states:
        assert torch.equal(s.ids[~region], init[~region])  # known tokens never change
        assert not s.masked[~region].any() and not s.revealed[~region].any()  # nothing outside is chosen
        assert s.ranking == order
    for row in range(3):
        expected = mask_counts("cosine", 8, int(region[row].sum()))
        assert [int(s.masked[row].sum()) for s in states] == expected
    assert not (states[-1].ids == MASK).any()


@pytest.mark.parametrize("order", ORDER_NAMES)
def test_every_order_gives_the_same_ids_for_the_same_seed(order):
    a, b = (decode_with(order, seed=5)[-1].ids for _ in range(2))
    assert torch.equal(a, b)
    assert not torch.equal(a, decode_with(order, seed=6)[-1].ids)


def test_the_halton_order_reveals_positions_in_its_rows_rolled_sequence():
    """Each row's tokens are fixed in the order of its own rolled Halton sequence, the count per step
    as the schedule says, whatever the model's confidence."""
    states = decode_with("halton", steps=8, seed=2)
    orders = halton_orders(8, 3, torch.Generator().manual_seed(2))  # the decoder's first draw
    for row in range(3):
        fixed_by = torch.zeros(64, dtype=torch.long)
        for s in states:
            fixed_by[s.revealed[row]] = s.step
        steps_in_order = fixed_by[orders[row]].tolist()
        assert steps_in_order == sorted(steps_in_order)  # earlier in the order = fixed no later
        assert steps_in_order[0] == 1 and steps_in_order[-1] == 8
    assert all(torch.equal(s.keep_noise[s.revealed], torch.zeros(int(s.revealed.sum()))) for s in states)


def test_random_order_is_a_permutation_drawn_per_image():
    states = decode_with("random", steps=4, seed=1)
    first = states[0].revealed
    assert not torch.equal(first[0], first[1])  # each image its own order
    assert int(first[0].sum()) == 64 - mask_counts("cosine", 4, 64)[0]


def test_fixed_orders_never_call_the_critic_and_the_critic_order_does():
    calls: list = []
    s = SamplerSettings(timesteps=4, order="halton")
    list(decode(fake_logits, torch.zeros(2, 64, dtype=torch.long), torch.ones(2, 64, dtype=torch.bool), MASK, s,
                torch.Generator().manual_seed(0), lambda ids: calls.append(1) or fake_critic(ids)))
    assert calls == []
    decode_with("critic", steps=4, calls=calls)
    assert len(calls) == 3  # every step but the last


def test_halton_temperature_ramps_from_one_to_one_point_two():
    assert halton_temperature(1.0, 0, 12) == 1.0
    assert halton_temperature(1.0, 11, 12) == pytest.approx(1 / 1.2)
    assert halton_temperature(2.0, 0, 1) == 2.0
    temps = [halton_temperature(1.0, t, 5) for t in range(5)]
    assert temps == sorted(temps, reverse=True) and temps[-1] > 0  # colder each step, never argmax


def test_fixed_orders_need_a_square_grid():
    with pytest.raises(ValueError, match="square"):
        decode_with("halton", n=60)


@pytest.mark.parametrize("order, use_critic, has_critic, ranks", [
    ("confidence", False, True, "confidence"), ("confidence", True, True, "critic"),
    ("confidence", True, False, "confidence"), ("critic", False, True, "critic"), ("critic", False, False, "confidence"),
    ("halton", True, True, "halton"), ("random", True, False, "random")])
def test_use_critic_is_the_older_spelling_of_order_critic(order, use_critic, has_critic, ranks):
    assert resolve_order(order, use_critic, has_critic) == ranks


def test_an_unknown_order_is_a_clear_error():
    with pytest.raises(ValueError, match="order must be one of confidence, critic, halton, random"):
        SamplerSettings(order="spiral")
