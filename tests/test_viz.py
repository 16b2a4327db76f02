"""The confidence pictures plot the quantities their legends name: recomputed here from the networks
themselves on the tiny fixed-seed pipeline (base stage), not read back from the sampler."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from muse import viz
from muse.runner import TextContext, bind_stage

PROMPT, SEED, COND = "red heart", 3, 3.0


def run(pipe, use_critic: bool):
    return list(pipe.stream(PROMPT, timesteps=4, seed=SEED, cond_scale=COND, use_critic=use_critic,
                            superres=False))


def base_stage(pipe, use_critic: bool):
    text = TextContext.encode(pipe.text_encoder, [PROMPT], None, 1, COND, pipe.device)
    return bind_stage("base", text, pipe.base_model, pipe.base_critic, use_critic)


@pytest.mark.parametrize("use_critic", [False, True])
def test_panels_plot_the_named_quantities(tiny_pipe, use_critic):
    steps = run(tiny_pipe, use_critic)
    stage = base_stage(tiny_pipe, use_critic)
    prob = np.full((8, 8), np.nan)
    critic = np.full((8, 8), np.nan)
    ids = torch.full((1, 64), tiny_pipe.base_model.mask_id)
    with torch.inference_mode():
        for s in steps:
            before = ids == tiny_pipe.base_model.mask_id
            pred = s.pred_ids.flatten(1)
            p = stage.logits_fn(ids).float().softmax(-1).gather(-1, pred[..., None]).squeeze(-1)
            fixed = s.revealed.flatten(1)[0].numpy()
            prob.reshape(-1)[fixed] = p[0].numpy()[fixed]
            if use_critic and s.step < s.total:
                filled = torch.where(before, pred, ids)
                right = torch.sigmoid(-stage.critic_fn(filled).float())
                critic.reshape(-1)[fixed] = right[0].numpy()[fixed]
            ids = s.ids.flatten(1)

    panels = {p.label: p for p in viz.confidence_panels(steps)}
    shown = panels[viz.PROBABILITY_LABEL].grids["base"]
    assert np.allclose(shown, prob, atol=1e-5, equal_nan=False)  # every token fixed, each with a value
    assert ((shown >= 0) & (shown <= 1)).all() and panels[viz.PROBABILITY_LABEL].limits == (0.0, 1.0)
    noise = panels[viz.noise_label(use_critic)].grids["base"]
    if use_critic:
        got = panels[viz.CRITIC_LABEL].grids["base"]
        assert np.allclose(got, critic, atol=1e-5, equal_nan=True)
        last = steps[-1].revealed[0].numpy()
        assert np.isnan(got[last]).all() and np.isfinite(got[~last]).all()  # the last step has no critic pass
        # the noise is uniform x critic_noise_scale x annealing: within half the scale at any step
        assert np.nanmax(np.abs(noise)) <= 0.5 * tiny_pipe.settings().critic_noise_scale
    else:
        assert viz.CRITIC_LABEL not in panels
    # keep score = what was ranked + the noise, for every token at the step that fixed it
    for s in steps:
        fixed = s.revealed[0].numpy()
        base = viz.ranked_by(s)
        assert np.allclose((base + viz.keep_noise(s))[fixed], s.scores[0].numpy()[fixed], atol=1e-4)
    assert np.all(noise[steps[-1].revealed[0].numpy()] == 0)  # annealed to nothing at the last step


def test_noise_decided_counts_the_choices_the_noise_made(tiny_pipe):
    steps = run(tiny_pipe, use_critic=False)
    for s in steps[:-1]:
        decided, fixed = viz.noise_decided(s)
        base, kept = viz.ranked_by(s), s.revealed[0].numpy()
        # a token the noise chose ranks below one it left masked, by the noiseless score
        candidates = np.isfinite(base)
        worst_kept = base[kept].min()
        best_left = base[candidates & ~kept].max()
        assert (decided > 0) == (worst_kept < best_left) and 0 <= decided <= fixed == int(kept.sum())
    assert viz.noise_decided(steps[-1]) == (0, int(steps[-1].revealed[0].sum()))
    # without noise (choice temperature 0), the noise decides nothing
    quiet = list(tiny_pipe.stream(PROMPT, timesteps=4, seed=SEED, use_critic=False, superres=False,
                                  choice_temperature=0.0))
    assert all(viz.noise_decided(s)[0] == 0 for s in quiet)


def test_confidence_map_draws_a_column_per_stage_and_a_row_per_quantity(tiny_pipe):
    steps = list(tiny_pipe.stream(PROMPT, timesteps=3, seed=SEED, use_critic=True))
    with_critic = viz.confidence_map(steps)
    without = viz.confidence_map(list(tiny_pipe.stream(PROMPT, timesteps=3, seed=SEED, use_critic=False)))
    assert with_critic.width == without.width > 600  # two stages side by side
    assert with_critic.height > without.height  # a third row: the critic's
