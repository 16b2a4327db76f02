"""Property tests of the sampler on fake logits: no network involved."""

from __future__ import annotations

import math

import pytest
import torch

from muse.sampling import SamplerSettings, decode, gumbel_sample, select_remask, top_k_filter
from muse.schedules import SCHEDULES, get_schedule, mask_counts, num_masked

V, MASK = 50, 50


def fake_logits(seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    table = torch.randn(64 * 4, V, generator=gen) * 3

    def fn(ids: torch.Tensor) -> torch.Tensor:
        b, n = ids.shape
        # Depends on the input so that steps differ, but deterministically.
        return table[:n].unsqueeze(0).expand(b, -1, -1) + (ids != MASK).float().sum(1)[:, None, None] * 0.01
    return fn


def run(settings, init=None, region=None, seed=0, critic=None, b=2, n=64):
    init = torch.zeros(b, n, dtype=torch.long) if init is None else init
    region = torch.ones(b, n, dtype=torch.bool) if region is None else region
    return list(decode(fake_logits(), init, region, MASK, settings, torch.Generator().manual_seed(seed), critic))


@pytest.mark.parametrize("schedule", sorted(SCHEDULES))
@pytest.mark.parametrize("steps", [1, 4, 12, 64, 100])
def test_masked_count_follows_schedule(schedule, steps):
    states = run(SamplerSettings(timesteps=steps, schedule=schedule))
    expected = mask_counts(schedule, steps, 64)
    assert [int(s.masked[0].sum()) for s in states] == expected
    assert all(int(s.masked[1].sum()) == e for s, e in zip(states, expected))
    assert expected[-1] == 0 and not (states[-1].ids == MASK).any()
    # Counts never increase, and where the schedule has room they are exactly floor(n * gamma).
    assert all(a >= b for a, b in zip([64] + expected, expected))
    fn = get_schedule(schedule)
    if steps in (4, 12):  # few steps over 64 tokens: exactly MaskGIT's floor(n * gamma(r)), at least 1
        assert expected[:-1] == [max(1, math.floor(64 * fn((k + 1) / steps))) for k in range(steps - 1)]


def test_schedule_rule_reveals_and_keeps_one():
    # More steps than tokens: one token per step until only the last step empties the grid.
    assert mask_counts("linear", 6, 3) == [2, 1, 1, 1, 1, 0]
    assert mask_counts("cosine", 3, 0) == [0, 0, 0]
    assert num_masked("cosine", 0, 1, 10, 10) == 0


def test_custom_callable_schedule_and_unknown_name():
    states = run(SamplerSettings(timesteps=4, schedule=lambda r: 1 - r))
    assert [int(s.masked[0].sum()) for s in states] == mask_counts("linear", 4, 64)
    with pytest.raises(ValueError, match="cosine"):
        SamplerSettings(schedule="zigzag")


def test_inpainting_never_changes_known_tokens_and_fills_region():
    gen = torch.Generator().manual_seed(3)
    init = torch.randint(0, V, (3, 64), generator=gen)
    region = torch.rand(3, 64, generator=gen) < 0.4
    region[2] = False
    region[2, :5] = True  # rows with different region sizes
    for remask in (False, True):
        states = run(SamplerSettings(timesteps=8, can_remask_prev_masked=remask), init=init, region=region, b=3)
        for s in states:
            assert torch.equal(s.ids[~region], init[~region])
            assert not s.masked[~region].any()
        final = states[-1].ids
        assert not (final == MASK).any()
        # The schedule counts from each row's own region size.
        for row in range(3):
            assert int(states[0].masked[row].sum()) == mask_counts("cosine", 8, int(region[row].sum()))[0]


def test_same_seed_same_ids_other_seed_differs():
    settings = SamplerSettings(timesteps=6, temperature=2.0)
    a = run(settings, seed=11)[-1].ids
    b = run(settings, seed=11)[-1].ids
    c = run(settings, seed=12)[-1].ids
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_critic_with_zero_noise_remasks_highest_scored():
    gen = torch.Generator().manual_seed(5)
    critic_scores = torch.randn(2, 64, generator=gen)
    settings = SamplerSettings(timesteps=4, critic_noise_scale=0.0)
    states = run(settings, critic=lambda ids: critic_scores.expand(ids.shape[0], -1))
    first = states[0]
    count = mask_counts("cosine", 4, 64)[0]
    for row in range(2):
        top = set(critic_scores[row].topk(count).indices.tolist())
        assert set(first.masked[row].nonzero().flatten().tolist()) == top

    # A critic taking (ids, positions) is asked for the candidates' scores alone, and answering there
    # or everywhere chooses the same tokens.
    asked = []

    def at_positions(ids, positions):
        asked.append((ids.clone(), positions))
        full = critic_scores.expand(ids.shape[0], -1)
        return full if positions is None else full.gather(1, positions)

    def logits_at(ids, positions):
        full = fake_logits()(ids)
        return full if positions is None else full.gather(1, positions[..., None].expand(-1, -1, V))

    def decode_with(critic):
        init, region = torch.zeros(2, 64, dtype=torch.long), torch.ones(2, 64, dtype=torch.bool)
        return list(decode(logits_at, init, region, MASK, settings, torch.Generator().manual_seed(0), critic))

    narrow = decode_with(at_positions)
    wide = decode_with(lambda ids, positions=None: critic_scores.expand(ids.shape[0], -1))
    assert [torch.equal(a.ids, b.ids) for a, b in zip(narrow, wide)] == [True] * 4
    assert asked[0][1] is None and len(asked) == 3  # first step: every position; none on the last
    for (ids, positions), state in zip(asked[1:], narrow):
        # the critic sees the filled grid; it is asked at the positions masked before this step
        assert positions.shape[1] == int(state.masked[0].sum())
        assert all(set(positions[row].tolist()) == set(state.masked[row].nonzero().flatten().tolist()) for row in range(2))


def test_confidence_selection_keeps_most_likely_without_noise():
    settings = SamplerSettings(timesteps=4, choice_temperature=0.0, temperature=0.0)
    first = run(settings)[0]
    logp = fake_logits()(torch.full((2, 64), MASK)).log_softmax(-1).max(-1).values
    count = mask_counts("cosine", 4, 64)[0]
    for row in range(2):
        assert set(first.masked[row].nonzero().flatten().tolist()) == set((-logp[row]).topk(count).indices.tolist())


def test_logits_fn_is_asked_for_the_masked_positions_only():
    """A logits function taking (ids, positions) is told the still-masked positions; answering there
    alone or everywhere gives the same ids; rows with different counts get asked for everything."""
    base = fake_logits()
    asked = []

    def at_positions(ids, positions):
        asked.append((ids.clone(), positions))
        full = base(ids)
        return full if positions is None else full.gather(1, positions[..., None].expand(-1, -1, V))

    def everywhere(ids, positions=None):
        return base(ids)

    settings = SamplerSettings(timesteps=6)
    states = list(decode(at_positions, torch.zeros(2, 64, dtype=torch.long), torch.ones(2, 64, dtype=torch.bool),
                         MASK, settings, torch.Generator().manual_seed(3)))
    assert asked[0][1] is None  # every position is masked: nothing to narrow
    for ids, positions in asked[1:]:
        assert positions.shape[1] < 64
        for row in range(2):
            assert positions[row].tolist() == (ids[row] == MASK).nonzero().flatten().tolist()
    assert not states[-1].masked.any() and (states[-1].ids != MASK).all()
    again = list(decode(everywhere, torch.zeros(2, 64, dtype=torch.long), torch.ones(2, 64, dtype=torch.bool),
                        MASK, settings, torch.Generator().manual_seed(3)))
    assert torch.equal(again[-1].ids, states[-1].ids)
    for s in states:  # the prediction is the model's sample where it was asked, the ids elsewhere
        assert ((s.pred_ids == s.ids) | s.masked | s.revealed).all()

    asked.clear()
    region = torch.ones(2, 64, dtype=torch.bool)
    region[1, :20] = False  # rows of different sizes: one logits call covers all their positions
    list(decode(at_positions, torch.zeros(2, 64, dtype=torch.long), region, MASK, settings, torch.Generator()))
    assert all(positions is None for _, positions in asked)

    asked.clear()  # tokens fixed earlier may be masked again: their logits are read too
    list(decode(at_positions, torch.zeros(2, 64, dtype=torch.long), torch.ones(2, 64, dtype=torch.bool), MASK,
                SamplerSettings(timesteps=6, can_remask_prev_masked=True), torch.Generator()))
    assert len(asked) == 6 and all(positions is None for _, positions in asked)


def test_top_k_and_temperature_zero():
    logits = torch.tensor([[1.0, 5.0, 3.0, 2.0]])
    filtered = top_k_filter(logits, 0.5)
    assert torch.isinf(filtered).sum() == 2 and filtered[0, 1] == 5 and filtered[0, 2] == 3
    assert top_k_filter(logits, 0.0).isfinite().all()
    gen = torch.Generator().manual_seed(0)
    assert gumbel_sample(logits, 0.0, gen).item() == 1
    draws = {gumbel_sample(filtered, 1.0, gen).item() for _ in range(50)}
    assert draws == {1, 2}


def test_select_remask_counts_per_row():
    scores = torch.tensor([[0.3, 0.1, 0.2], [0.9, 0.8, 0.7]])
    out = select_remask(scores, torch.tensor([1, 2]))
    assert out.tolist() == [[False, True, False], [False, True, True]]


def test_yielded_state_contents():
    states = run(SamplerSettings(timesteps=5))
    assert [s.step for s in states] == [1, 2, 3, 4, 5] and all(s.total == 5 for s in states)
    revealed = torch.stack([s.revealed for s in states]).sum(0)
    assert torch.equal(revealed, torch.ones_like(revealed))  # each token fixed exactly once
    for s in states:
        assert s.pred_ids.shape == (2, 64) and (s.pred_ids < V).all()
        assert torch.equal(s.masked, s.ids == MASK)


@pytest.mark.parametrize("bad", [dict(timesteps=0), dict(timesteps=2.5), dict(temperature=-1),
                                 dict(temperature=float("nan")), dict(topk_filter_thres=1.0),
                                 dict(critic_noise_scale=float("inf"))])
def test_invalid_settings_are_clear_errors(bad):
    with pytest.raises(ValueError):
        SamplerSettings(**bad)


@pytest.mark.parametrize("with_critic", [False, True])
def test_state_exposes_the_parts_of_the_keep_score(with_critic):
    """log_probs is the model's log-probability of its sample, critic_scores the critic's output and
    keep_noise the random rest: together exactly the keep score the sampler ranked by."""
    gen = torch.Generator().manual_seed(3)
    table = torch.randn(2, 64, generator=gen)
    critic = (lambda ids: table.expand(ids.shape[0], -1)) if with_critic else None
    settings = SamplerSettings(timesteps=4, critic_noise_scale=2.0, choice_temperature=4.5)
    states = run(settings, critic=critic)
    before = torch.ones(2, 64, dtype=torch.bool)  # masked before the step: the sampler's candidates
    for s in states:
        ids_in = torch.where(before, torch.full_like(s.ids, MASK), s.pred_ids)
        expected = fake_logits()(ids_in).log_softmax(-1).gather(-1, s.pred_ids[..., None]).squeeze(-1)
        assert torch.allclose(s.log_probs[before], expected[before], atol=1e-5)
        assert s.log_probs[~before].isnan().all() and s.keep_noise[~before].isnan().all()
        assert (s.log_probs[before] <= 0).all()
        last = s.step == s.total
        if with_critic and not last:
            assert torch.equal(s.critic_scores[before], table.expand(2, -1)[before])
            base = -s.critic_scores
            assert s.keep_noise[before].abs().max() <= 0.5 * 2.0 * (s.total - s.step) / s.total + 1e-6
        else:
            assert s.critic_scores is None
            base = s.log_probs
        assert torch.allclose(s.scores[before], (base + s.keep_noise)[before], atol=1e-4)
        if last:
            assert (s.keep_noise[before] == 0).all()  # annealed away: the last step keeps all
        before = s.masked



def test_a_critic_is_handed_the_sampled_tokens_log_probabilities():
    """A critic that takes a third argument gets the log-probability of each token sampled this step
    (0 elsewhere); one that equals -log p with no noise reveals what confidence with no noise reveals,
    draw for draw."""
    gen = torch.Generator().manual_seed(0)
    table = torch.randn(16, 10, generator=gen) * 3  # a fixed logit table per position

    def logits_fn(ids):
        return table.expand(ids.shape[0], -1, -1)

    seen = []

    def critic_fn(ids, positions, log_probs):
        seen.append((ids.clone(), log_probs.clone()))
        return -log_probs if positions is None else -log_probs.gather(1, positions)

    settings = SamplerSettings(timesteps=4, temperature=1.0, topk_filter_thres=0.0, critic_noise_scale=0.0,
                               choice_temperature=0.0)
    init, region = torch.zeros(2, 16, dtype=torch.long), torch.ones(2, 16, dtype=torch.bool)
    with_critic = list(decode(logits_fn, init, region, 10, settings, torch.Generator().manual_seed(1), critic_fn))
    plain = list(decode(logits_fn, init, region, 10, settings, torch.Generator().manual_seed(1)))
    assert all(torch.equal(a.ids, b.ids) for a, b in zip(with_critic, plain))
    ids, log_probs = seen[0]  # step 1: every position sampled
    expected = table.log_softmax(-1).expand(2, -1, -1).gather(-1, ids[..., None]).squeeze(-1)
    assert torch.allclose(log_probs, expected, atol=1e-5)
    ids, log_probs = seen[1]  # step 2: the known tokens read 0
    known = ~with_critic[0].masked
    assert (log_probs[known] == 0).all() and (log_probs[~known] < 0).all()


def test_each_named_rule_has_a_decode_loop():
    from muse.sampler_rules import DECODERS, SAMPLER_RULES, amused_decode, decoder

    assert tuple(DECODERS) == SAMPLER_RULES and decoder("muse") is decode and decoder("amused") is amused_decode
    with pytest.raises(ValueError, match="unknown sampler rules 'ddim'; choose one of muse, amused"):
        decoder("ddim")
    init, region = torch.zeros(1, 4, dtype=torch.long), torch.ones(1, 4, dtype=torch.bool)
    with pytest.raises(ValueError, match="no token critic"):
        next(amused_decode(lambda ids: torch.zeros(1, 4, 3), init, region, 3, SamplerSettings(), torch.Generator(),
                           lambda ids: torch.zeros(1, 4)))
