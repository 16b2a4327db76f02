"""muse.viz on the tiny fixed-seed pipeline: the confidence pictures plot the quantities their legends name
(recomputed here from the networks themselves, base stage, not read back from the sampler), and the other
pictures of a run show what they say."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from PIL import Image

from muse import viz
from muse.orders import halton_order
from muse.runner import TextContext, bind_stage
from tests.harness.images import gradient

PROMPT, SEED, COND = "red heart", 3, 3.0


def run(pipe, use_critic: bool):
    return list(pipe.stream(PROMPT, timesteps=4, seed=SEED, cond_scale=COND, use_critic=use_critic,
                            superres=False))


def base_stage(pipe, use_critic: bool):
    text = TextContext.encode(pipe.text_encoder, [PROMPT], None, 1, pipe.device)  # no negative: the null context
    return bind_stage("base", text, pipe.base_model, pipe.base_critic, use_critic, cond_scale=COND)


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


@pytest.mark.parametrize("order, name", [("halton", "Halton"), ("random", "random")])
def test_under_a_fixed_order_the_figures_say_the_order_ranked_the_tokens(tiny_pipe, order, name):
    steps = list(tiny_pipe.stream(PROMPT, timesteps=4, seed=SEED, cond_scale=COND, order=order))
    assert {s.state.ranking for s in steps} == {order}
    panels = viz.confidence_panels(steps)
    # what ranked: the place in the order, then the model's p(token) for information; no noise, no critic
    assert [p.label for p in panels] == [viz.order_label(order), viz.PROBABILITY_LABEL]
    assert f"place in the {name} order" in panels[0].title and "what ranked" in panels[0].title
    assert "not the ranking" in panels[1].title and "what ranked" not in panels[1].title
    assert f"{name} order" in viz.order_label(order) and "no noise" in viz.order_label(order)
    reveal = viz.reveal_order(steps)
    for stage, place in panels[0].grids.items():
        side = place.shape[0]
        assert sorted(place.ravel().astype(int)) == list(range(side * side))  # each token's place, once
        assert panels[0].limits[stage] == (0.0, side * side - 1.0)
        # a token fixed at an earlier step has an earlier place: the order alone chose
        assert all(place[reveal[stage] == k].max() < place[reveal[stage] == k + 1].min() for k in range(1, 4))
        if order == "halton":  # the published order, from the request's random start
            by_place = np.argsort(place.ravel())
            canonical = halton_order(side).numpy()
            assert any(np.array_equal(by_place, np.roll(canonical, k)) for k in range(side * side)), stage
    assert np.allclose(panels[1].grids["base"], viz.confidence_at_reveal(steps)["base"], equal_nan=True)
    for s in steps:  # keep score = minus the place, without noise: the noise chose nothing
        fixed = s.revealed[0].numpy()
        assert np.array_equal(viz.ranked_by(s)[fixed], s.scores[0].numpy()[fixed])
        assert viz.noise_decided(s)[0] == 0 and np.nanmax(np.abs(viz.keep_noise(s))) == 0
    figure = viz.confidence_map(steps)
    assert np.array_equal(np.asarray(figure), np.asarray(viz.confidence_map(steps, ranking=order)))
    assert figure.width > 600 and figure.height < viz.confidence_map(run(tiny_pipe, True)).height  # two rows
    # the step's picture and line: the order chose, the model's p is not called the ranking
    picture, quantity = viz.step_tokens(steps[1], 256)
    assert quantity == viz.PROBABILITY_LABEL and picture.size[0] == 256
    line = viz.step_summary(steps[1])
    assert f"the next in the {name} order (places " in line and "not the ranking" in line
    assert "noise chose" not in line and "critic" not in line
    assert viz.order_words(steps[0]) == f"{name} order"


def test_the_steps_name_what_ranked_them(tiny_pipe):
    assert {s.state.ranking for s in run(tiny_pipe, True)} == {"critic"}
    assert {viz.order_words(s) for s in run(tiny_pipe, False)} == {"ranked by confidence"}
    assert viz.fixed_order(run(tiny_pipe, True)) is None and viz.order_place(run(tiny_pipe, False)[0]) is None


# ----- the pictures of a run: tiles, outlines, reveal order, schedule, timeline, GIF, difference -----------

@pytest.fixture(scope="module")
def steps(tiny_pipe):
    return list(tiny_pipe.stream("red heart", timesteps=4, seed=3, num_images=2))


@pytest.fixture(scope="module")
def inpaint_steps(tiny_pipe):
    mask = Image.new("L", (64, 64), 0)
    mask.paste(255, (0, 0, 32, 64))
    return list(tiny_pipe.stream_inpaint(gradient((64, 64)), mask, "cat face", timesteps=3, seed=1))


def test_upscale_is_nearest_and_tile_makes_a_grid():
    small = Image.fromarray(np.array([[[0, 0, 0], [255, 255, 255]]], np.uint8))  # 2x1
    big = viz.upscale(small, 8)
    assert big.size == (8, 4)
    assert set(np.unique(np.asarray(big))) == {0, 255}
    assert viz.tile([small] * 4).size == (4, 2)
    assert viz.tile([small] * 3, columns=3).size == (6, 1)
    with pytest.raises(ValueError):
        viz.tile([])


def test_highlight_outlines_the_revealed_tokens(steps):
    step = steps[1]
    out = viz.highlight_tokens(step.canvas[0], step.revealed[0], 256)
    arr = np.asarray(out)
    hits = (arr == viz.HIGHLIGHT).all(-1)
    cells = hits.reshape(8, 32, 8, 32).any(axis=(1, 3))  # base grid: 8x8 tokens of 32 px
    assert np.array_equal(cells, step.revealed[0].numpy())
    assert viz.step_canvas(step, 128).size == (256, 128)  # two images tiled


def test_reveal_order_and_confidence(steps, inpaint_steps):
    order = viz.reveal_order(steps, index=1)
    assert set(order) == {"base", "superres"}
    assert order["base"].shape == (8, 8) and order["superres"].shape == (16, 16)
    for grid in order.values():
        assert grid.min() >= 1 and grid.max() == 4  # every token fixed at some step
    conf = viz.confidence_at_reveal(steps)  # the model's probability of each token when it was fixed
    assert all(np.isfinite(c).all() and ((c >= 0) & (c <= 1)).all() for c in conf.values())

    inpaint_order = viz.reveal_order(inpaint_steps)["superres"]
    region = inpaint_steps[-1].region[0].numpy()
    assert (inpaint_order[~region] == 0).all() and (inpaint_order[region] >= 1).all()
    inpaint_conf = viz.confidence_at_reveal(inpaint_steps)["superres"]
    assert np.isnan(inpaint_conf[~region]).all() and np.isfinite(inpaint_conf[region]).all()
    assert viz.reveal_order_map(inpaint_steps).width > viz.reveal_order_map(inpaint_steps).height
    assert viz.confidence_map(inpaint_steps, critic=True).mode == "RGB"


def test_schedule_plot_and_timeline(steps):
    assert viz.schedule_plot("cosine", 12, {"base": 64, "superres": 256}).mode == "RGB"
    assert viz.schedule_plot("linear", 1, (64,)).size[0] > 0
    sheet = viz.timeline_sheet(steps, size=32)  # 2 stages of 4 steps: a row each, under its title
    assert sheet.width == 4 * 32 + 3 * 3 and 2 * 32 < sheet.height < 4 * 32
    assert viz.timeline_sheet(steps, size=32, columns=2).height > 4 * 32  # 2 rows per stage
    # every step's picture is in its cell: the last cell holds the final image
    cell = viz.step_canvas(steps[-1], 16)  # a batch of 2, tiled side by side in the 32 px cell
    x, y = 3 * 35, sheet.height - 12 - cell.height
    assert np.array_equal(np.asarray(sheet.crop((x, y, x + cell.width, y + cell.height))), np.asarray(cell))


def test_decoding_gif(steps, tmp_path):
    path = viz.decoding_gif(steps, tmp_path / "sub" / "run.gif")
    with Image.open(path) as gif:
        assert gif.format == "GIF" and gif.n_frames == len(steps)
        durations = []
        for i in range(gif.n_frames):
            gif.seek(i)
            durations.append(gif.info["duration"])
    assert durations[-1] == max(durations) > durations[0]  # the final frame is held
    no_canvas = [dataclasses.replace(s, canvas=None) for s in steps]
    with pytest.raises(ValueError, match="previews"):
        viz.decoding_gif(no_canvas, tmp_path / "none.gif")


def test_the_difference_view_counts_positions_chosen_differently(tiny_pipe):
    a = list(tiny_pipe.stream("red heart", seed=4, timesteps=4, use_critic=True))
    b = list(tiny_pipe.stream("red heart", seed=4, timesteps=4, use_critic=False))
    same = viz.difference_grids(a, a)
    assert all(not differs.any() and np.isfinite(when).all() for differs, when in same.values())
    grids = viz.difference_grids(a, b)
    for stage, (differs, when) in grids.items():
        ids_a, ids_b = [next(s for s in reversed(run) if s.stage == stage).ids[0].numpy() for run in (a, b)]
        assert np.array_equal(differs, ids_a != ids_b)
        assert ((when > 0) & (when <= 1)).all()
    # halfway, only tokens both runs have fixed can differ
    half = viz.difference_grids(a[:2], b[:2])["base"]
    fixed_both = ~a[1].masked[0].numpy() & ~b[1].masked[0].numpy()
    assert not (half[0] & ~fixed_both).any() and np.array_equal(np.isfinite(half[1]), fixed_both)
