"""The token-level stage runner, the renderer's helpers, and token ids as a pipeline output."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from muse.ops import token_cells
from muse.runner import Stage, run_stage
from muse.settings import SamplerSettings


def test_any_logits_function_and_mask_id_run_through_the_stage_runner():
    """Another model family brings its own logits function and mask id (here 7 codes, mask id 99)."""
    calls = []

    def logits_fn(ids: torch.Tensor) -> torch.Tensor:  # one argument: the runner adapts it
        calls.append(ids.clone())
        return torch.log_softmax(torch.arange(7.0).expand(*ids.shape, 7), -1)

    known = torch.full((2, 3, 3), 5)
    region = torch.zeros(2, 3, 3, dtype=torch.bool)
    region[:, :2] = True
    states = list(run_stage(Stage("other", logits_fn, mask_id=99), known, region,
                            SamplerSettings(timesteps=3, temperature=0.0), torch.Generator().manual_seed(0)))
    assert len(states) == 3 and all(s.ids.shape == (2, 3, 3) for s in states)
    assert (calls[0][region.flatten(1)] == 99).all()  # the region starts masked with this family's mask id
    final = states[-1].ids
    assert (final[:, 2] == 5).all() and (final[region] == 6).all()  # known kept; argmax everywhere else
    assert not states[-1].masked.any()


def test_token_cells_cover_each_token_with_its_pixels():
    grid = torch.tensor([[True, False], [False, True]])
    cells = token_cells(grid, 3)
    assert cells.shape == (6, 6) and cells[:3, :3].all() and not cells[:3, 3:].any() and cells[3:, 3:].all()


def test_token_ids_are_a_public_output(tiny_pipe):
    ids = tiny_pipe(["a cat", "a dog"], seed=1, output_type="ids")
    assert ids.shape == (2, 16, 16) and ids.dtype == torch.long and (ids < tiny_pipe.vq.codebook_size).all()
    steps = list(tiny_pipe.stream(["a cat", "a dog"], seed=1, previews=False))
    assert torch.equal(ids, steps[-1].ids)
    images = tiny_pipe(["a cat", "a dog"], seed=1)
    # the images are the ids' decode, matched to the base stage's image (super-res back-projection)
    base_ids = next(s.ids for s in steps if s.stage == "base" and s.step == s.total)
    with torch.inference_mode():
        base = tiny_pipe.renderer.decode(base_ids)
        decoded = tiny_pipe.renderer.step_images(ids, ids, torch.zeros_like(ids, dtype=torch.bool), low_res=base)[0]
    assert all(np.array_equal(np.asarray(a), np.asarray(b)) for a, b in zip(images, decoded))
    assert tiny_pipe("a cat", seed=1, superres=False, output_type="ids").shape == (1, 8, 8)
    low_res = images[0].resize((32, 32))
    assert tiny_pipe.superres(low_res, "a cat", seed=1, output_type="ids").shape == (1, 16, 16)
    with pytest.raises(ValueError, match="output_type must be one of pil, ids"):
        tiny_pipe("a cat", output_type="latent")


def test_what_a_request_will_do(tiny_pipe):
    assert tiny_pipe.token_counts() == {"base": 64, "superres": 256}
    assert tiny_pipe.token_counts(superres=False) == {"base": 64}
    assert tiny_pipe.output_size() == 64 and tiny_pipe.output_size(superres=False) == 32
    assert tiny_pipe.uses_critic(True) and not tiny_pipe.uses_critic(False)


def test_the_order_setting_reaches_every_stage_and_use_critic_spells_the_critic_order(tiny_pipe):
    """pipe(prompt, order=...) decodes both stages by that order; use_critic=True with the default order
    is order="critic"; a named order wins over use_critic."""
    def run(**kwargs):
        return list(tiny_pipe.stream("a cat", seed=3, timesteps=4, previews=False, **kwargs))

    for order in ("confidence", "critic", "halton", "random"):
        steps = run(order=order, use_critic=False)
        assert {s.state.ranking for s in steps} == {order} and {s.stage for s in steps} == {"base", "superres"}
    critic = run(order="critic", use_critic=False)
    assert torch.equal(run(use_critic=True)[-1].ids, critic[-1].ids)
    assert torch.equal(run(order="halton", use_critic=True)[-1].ids, run(order="halton", use_critic=False)[-1].ids)
    assert tiny_pipe.ranking(tiny_pipe.settings(use_critic=True)) == "critic"
    assert tiny_pipe.ranking(tiny_pipe.settings(order="random", use_critic=True)) == "random"
    # the orders give different images from one seed
    finals = {o: run(order=o, use_critic=False)[-1].ids for o in ("confidence", "halton", "random")}
    assert not torch.equal(finals["confidence"], finals["halton"])
    assert not torch.equal(finals["halton"], finals["random"])


def test_the_critic_order_on_a_model_without_a_critic_is_refused(tiny_pipe):
    critic, tiny_pipe.base_critic = tiny_pipe.base_critic, None
    self_critic = tiny_pipe.base_model.config.self_critic
    try:
        assert not tiny_pipe.uses_critic(True) and not self_critic
        with pytest.raises(ValueError, match="order='critic' needs a token critic and this model has none; "
                                             "choose confidence, halton, random"):
            tiny_pipe("a cat", order="critic", superres=False)
        # use_critic=True (the default) still falls back to confidence, as it always did
        assert tiny_pipe.ranking(tiny_pipe.settings(use_critic=True)) == "confidence"
        tiny_pipe("a cat", order="halton", superres=False, timesteps=2)
    finally:
        tiny_pipe.base_critic = critic
