"""Classifier-free guidance over the steps: constant, or fading with the share of tokens still masked."""

from __future__ import annotations

import pytest
import torch

from muse.guidance import GuidedLogits, combine
from muse.settings import SettingError


class _Halves:
    """A stand-in network: conditional rows answer 1, unconditional rows 0, so guided logits equal the
    scale applied to each row."""

    mask_id = 9

    class config:
        self_cond = False

    def __call__(self, ids, context, *, self_cond_embed=None, positions=None, repeat=1, token_features=None):
        b, n = ids.shape
        m = n if positions is None else positions.shape[1]
        out = torch.cat([torch.ones(b, m, 3), torch.zeros(b, m, 3)]) if repeat == 2 else torch.ones(b, m, 3)
        return out, None


def test_fading_guidance_falls_from_cond_scale_to_one_row_by_row():
    fn = GuidedLogits(_Halves(), context=None, cond_scale=4.0, schedule="fading")
    ids = torch.full((2, 8), 9)
    ids[1, :4] = 0  # the second row starts with half its grid known (inpainting): its own start counts
    assert fn(ids)[:, 0, 0].tolist() == [4.0, 4.0]  # everything the stage will generate is masked
    ids[0, :6] = 1  # row 0: 2 of its 8 still masked
    ids[1, 4:6] = 1  # row 1: 2 of its 4
    assert fn(ids)[:, 0, 0].tolist() == [pytest.approx(1 + 3 * 2 / 8), pytest.approx(1 + 3 * 2 / 4)]
    ids[:, :] = 1
    assert fn(ids)[:, 0, 0].tolist() == [1.0, 1.0]  # nothing masked: plain conditioning


def test_constant_guidance_is_the_published_combination():
    fn = GuidedLogits(_Halves(), context=None, cond_scale=4.0)
    ids = torch.full((1, 8), 9)
    ids[0, :7] = 1
    assert fn(ids)[0, 0, 0].item() == 4.0
    out = torch.tensor([[2.0], [1.0]])  # [cond; null]
    assert combine(out, 3.0).item() == 4.0 and combine(out, torch.tensor([3.0])).item() == 4.0


def test_a_request_picks_the_schedule_and_a_bad_name_is_a_clear_error(tiny_pipe):
    fading = tiny_pipe("a cat", seed=0, output_type="ids", guidance_schedule="fading")
    constant = tiny_pipe("a cat", seed=0, output_type="ids")
    assert fading.shape == constant.shape and not torch.equal(fading, constant)
    assert torch.equal(constant, tiny_pipe("a cat", seed=0, output_type="ids", guidance_schedule="constant"))
    with pytest.raises(SettingError, match="guidance_schedule must be one of constant, fading"):
        tiny_pipe("a cat", guidance_schedule="rising")
