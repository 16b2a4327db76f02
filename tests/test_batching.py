"""muse.batching: requests decoding at the same time share their forward passes, and each still gets the ids
of its solo run.

Exactness is tested in float32 with one intra-op thread (what a server on this 2-core machine decodes with:
`muse.compute.server_threads`), where it holds bit for bit: every row of a batch is computed by the same
kernels as alone (`MaskedTransformer._run`). With two threads MKL splits the sums of a product of few rows
(one image's 64 tokens) differently from those of many, so a batched request's logits can differ from its solo
run's in their last bits and a near tie can flip; measured on the shipped weights with 8 requests: 7 of 8 equal,
98.8 % of the tokens (benchmarks/concurrency.py reports it as `agreement`).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any, Optional

import numpy as np
import pytest
import torch
from PIL import Image

from muse.batching import Batcher, Cancelled, TransformerCall, default_max_batch, run_forward
from muse.config import TransformerConfig
from muse.settings import SettingError
from muse.transformer import ForwardInputs, MaskedTransformer

from .conftest import TINY_GEN


@pytest.fixture(autouse=True)
def one_thread():
    """One intra-op thread for the solo runs (the main thread) and the batches (see the module docstring)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def batcher():
    b = Batcher(threads=1)
    yield b
    b.close()


# ----- the batched forward -----------------------------------------------------------------------------


def _model(seed: int, seq_len: int = 16, **config: Any) -> MaskedTransformer:
    torch.manual_seed(seed)
    return MaskedTransformer(TransformerConfig(seq_len=seq_len, **{**TINY_GEN, **config})).eval()


def _context(model: MaskedTransformer, length: int, rows: int, guided: str, seed: int,
             cond: Optional[torch.Tensor] = None):
    """A prepared context of `rows` rows: unguided, guided with the null context ("null": null rows) or with
    a negative prompt ("negative")."""
    from muse.guidance import guidance_context

    g = torch.Generator().manual_seed(seed)
    embeds, mask = torch.randn(rows, length, 384, generator=g), torch.ones(rows, length, dtype=torch.bool)
    if length > 3:
        mask[:, -1] = False  # padding in the text
    c = model.prepare_context(embeds, mask, cond)
    if guided == "none":
        return c, 1
    if guided == "null":
        u = model.prepare_context(torch.zeros_like(embeds), torch.zeros_like(mask), cond)
    else:
        u = model.prepare_context(torch.randn(rows, length + 2, 384, generator=g)[:, :length], mask, cond)
    return guidance_context(c, u, 3.0), 2


VARIANTS = {
    "generator": dict(),
    "critic reading log p": dict(kind="critic", confidence_input=True),
    "self-critic": dict(self_critic=True),
    "one block": dict(depth=1),
    "super-res": dict(seq_len=64, cond_seq_len=16, cond_spatial=True),
}


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_forward_many_gives_each_call_what_forward_gives_it_alone(variant):
    config = dict(VARIANTS[variant])
    seq_len = config.pop("seq_len", 16)
    model = _model(0, seq_len, **config)
    n, vocab = model.config.seq_len, model.config.num_tokens
    g = torch.Generator().manual_seed(1)
    calls = []
    # rows, text length, guidance, positions asked (None: every position): contexts of three lengths,
    # null rows and negative prompts, positions of several counts and none
    for i, (rows, length, guided, count) in enumerate([(1, 5, "null", 9), (2, 7, "negative", 3), (1, 5, "none", None),
                                                       (1, 4, "null", 14), (2, 7, "none", 9), (1, 2, "negative", 1)]):
        cond = torch.randint(0, vocab, (rows, model.config.cond_seq_len), generator=g) \
            if model.config.cond_seq_len else None
        context, repeat = _context(model, length, rows, guided, seed=i, cond=cond)
        ids = torch.randint(0, vocab, (rows, n), generator=g)
        positions = None if count is None else torch.stack([torch.randperm(n, generator=g)[:count].sort().values
                                                            for _ in range(rows)])
        features = torch.randn(rows, n, generator=g) if model.config.confidence_input else None
        calls.append(ForwardInputs(ids, context, positions, repeat, features))
    with torch.inference_mode():
        together = model.forward_many(calls)
        padded = model.forward_many(calls, exact=False)  # a GPU's way: the last block once, positions padded
        for call, (out, embed), (out_p, embed_p) in zip(calls, together, padded):
            alone, alone_embed = model(call.ids, call.context, positions=call.positions, repeat=call.repeat,
                                       token_features=call.token_features)
            assert out.shape == alone.shape and torch.equal(out, alone)
            assert torch.equal(embed, alone_embed)
            assert out_p.shape == alone.shape and torch.allclose(out_p, alone, atol=1e-5, rtol=1e-5)
            assert torch.allclose(embed_p, alone_embed, atol=1e-5, rtol=1e-5)


def test_self_conditioned_models_run_alone():
    model = _model(0, self_cond=True)
    context, _ = _context(model, 4, 1, "none", 0)
    call = TransformerCall(model, ForwardInputs(torch.zeros(1, 16, dtype=torch.long), context))
    assert call.key is None  # the batcher never stacks it
    with pytest.raises(ValueError, match="self-conditioned"):
        model.forward_many([call.inputs])


# ----- whole requests ----------------------------------------------------------------------------------


def _image() -> Image.Image:
    return Image.fromarray((np.random.RandomState(0).rand(32, 32, 3) * 255).astype("uint8"))


def _mask() -> Image.Image:
    mask = Image.new("L", (32, 32), 0)
    mask.paste(255, (8, 8, 24, 24))
    return mask


# Different settings in every field the sampler reads, prompts of different lengths (so contexts of different
# lengths), both stages, inpainting and super-res alone, one to two images.
REQUESTS = [
    ("stream", ("a cat",), dict(seed=1, timesteps=6)),
    ("stream", ("a red apple on a wooden table",), dict(seed=2, timesteps=8, schedule="linear", cond_scale=5.0,
                                                         temperature=2.0)),
    ("stream", ("sun",), dict(seed=3, timesteps=5, order="halton", cond_scale=1.0)),
    ("stream", ("grinning face",), dict(seed=4, timesteps=7, use_critic=False, negative_prompt="blurry", num_images=2)),
    ("stream", ("dog",), dict(seed=5, timesteps=4, order="random", guidance_schedule="fading", superres=False)),
    ("stream_inpaint", ("image", "mask", "a hat"), dict(seed=6, timesteps=5, order="critic", critic_noise_scale=2.0)),
    ("stream_superres", ("image", "a tree"), dict(seed=7, timesteps=6, schedule="arccos")),
    ("stream", ("a blue car",), dict(seed=8, timesteps=9, can_remask_prev_masked=True, choice_temperature=1.0,
                                     topk_filter_thres=0.5)),
]


def _states(pipe, method: str, args: tuple, kwargs: dict):
    """The request's every state: (stage, step, ids, still masked), without pictures."""
    args = tuple({"image": _image(), "mask": _mask()}.get(a, a) for a in args)
    for step in getattr(pipe, method)(*args, previews=False, **kwargs):
        yield step.stage, step.step, step.ids.clone(), step.masked.clone()


def _same(solo: list, batched: list) -> bool:
    return len(solo) == len(batched) and all(
        a[:2] == b[:2] and torch.equal(a[2], b[2]) and torch.equal(a[3], b[3]) for a, b in zip(solo, batched))


class _Passes:
    """Records each pass's calls (rows of ids, positions asked) through TransformerCall.together."""

    def __init__(self, monkeypatch):
        self.passes: list[list[tuple[int, Optional[int]]]] = []
        together = TransformerCall.together

        def recording(calls):
            self.passes.append([(c.inputs.ids.shape[0], None if c.inputs.positions is None
                                 else c.inputs.positions.shape[1]) for c in calls])
            return together(calls)

        monkeypatch.setattr(TransformerCall, "together", staticmethod(recording))


def test_requests_started_at_different_steps_get_their_solo_ids(tiny_pipe, batcher, monkeypatch):
    solo = [list(_states(tiny_pipe, *r)) for r in REQUESTS]
    passes = _Passes(monkeypatch)
    jobs, seen = [], []
    for request in REQUESTS:
        jobs.append(batcher.stream(_states, tiny_pipe, *request))
        seen.append([next(jobs[-1])])  # the next request starts once this one has taken its first step
    batched = [first + list(job) for first, job in zip(seen, jobs)]
    for request, a, b in zip(REQUESTS, solo, batched):
        assert _same(a, b), f"{request} differs from its solo run"
    assert batcher.stats.admitted == len(REQUESTS) and batcher.stats.shared > 0
    # requests at different points of their decoding (different counts of masked positions) shared a pass
    assert any(len({m for _, m in calls}) > 1 for calls in passes.passes)
    assert batcher.active == 0 and batcher.waiting == 0


def test_a_one_shot_call_and_the_stream_of_the_same_request_agree(tiny_pipe, batcher):
    kwargs = dict(seed=11, timesteps=5, output_type="ids")
    jobs = [batcher.submit(tiny_pipe, "a cat", **kwargs), batcher.submit(tiny_pipe, "an owl at night", **kwargs)]
    assert torch.equal(jobs[0].result(60), tiny_pipe("a cat", **kwargs))
    assert torch.equal(jobs[1].result(60), tiny_pipe("an owl at night", **kwargs))


def test_amused_requests_get_their_solo_ids(tmp_path, batcher):
    pytest.importorskip("diffusers")
    from muse import load_pipeline
    from muse.amused import make_tiny_amused

    pipe = load_pipeline(make_tiny_amused(tmp_path / "amused"))
    requests = [("a cat", dict(seed=1)), ("the dog and the cat", dict(seed=2, timesteps=8, cond_scale=4.0)),
                ("sun", dict(seed=3, cond_scale=1.0, timesteps=6)),
                ("an apple", dict(seed=4, negative_prompt="red", num_images=2)),
                ("a tree", dict(seed=5, sampler="muse", order="halton", timesteps=7)),
                ("of", dict(seed=6, sampler="muse", guidance_schedule="fading"))]
    solo = [pipe(p, output_type="ids", **kw) for p, kw in requests]
    jobs = [batcher.submit(pipe, p, output_type="ids", **kw) for p, kw in requests]
    for (prompt, _), ids, job in zip(requests, solo, jobs):
        assert torch.equal(job.result(120), ids), prompt
    assert batcher.stats.shared > 0


# ----- requests that fail, leave or wait ---------------------------------------------------------------


def test_a_request_that_raises_mid_run_ends_alone(tiny_pipe, batcher):
    def failing():
        for i, state in enumerate(_states(tiny_pipe, *REQUESTS[0])):
            yield state
            if i == 2:
                raise RuntimeError("the request's own code broke")

    others = REQUESTS[1:4]
    solo = [list(_states(tiny_pipe, *r)) for r in others]
    broken = batcher.stream(failing)
    jobs = [batcher.stream(_states, tiny_pipe, *r) for r in others]
    got = []
    with pytest.raises(RuntimeError, match="own code broke"):
        for state in broken:
            got.append(state)
    assert len(got) == 3  # the steps before the error reach the reader
    for a, job in zip(solo, jobs):
        assert _same(a, list(job))


def test_a_request_failing_its_checks_never_enters(tiny_pipe, batcher):
    job = batcher.stream(tiny_pipe.stream, "a cat", timesteps=0)
    with pytest.raises(SettingError, match="timesteps"):
        next(job)
    ok = batcher.submit(tiny_pipe, "a cat", seed=1, timesteps=3, output_type="ids")
    ok.result(60)
    assert batcher.stats.admitted == 1  # only the valid request entered


def test_a_cancelled_request_leaves_at_its_next_step_and_frees_its_place(tiny_pipe):
    with Batcher(max_batch=1, threads=1) as b:
        long = b.stream(_states, tiny_pipe, "stream", ("a cat",), dict(seed=1, timesteps=256, superres=False))
        next(long)
        waiting = b.submit(tiny_pipe, "a dog", seed=2, timesteps=3, output_type="ids")
        deadline = time.monotonic() + 10
        while b.waiting == 0 and time.monotonic() < deadline:  # its text encoded, it asks for its first forward
            time.sleep(0.01)
        assert b.waiting == 1 and not waiting.done  # one image at a time: the second waits in line
        long.cancel()
        rest = list(long)  # what it made before leaving, then the end (no error: its reader cancelled it)
        assert len(rest) < 255
        assert torch.equal(waiting.result(60), tiny_pipe("a dog", seed=2, timesteps=3, output_type="ids"))
        assert long.done and b.active == 0


def test_a_request_cancelled_while_waiting_in_line_never_enters(tiny_pipe):
    with Batcher(max_batch=1, threads=1) as b:
        first = b.stream(_states, tiny_pipe, "stream", ("a cat",), dict(seed=1, timesteps=24, superres=False))
        next(first)
        waiting = b.stream(_states, tiny_pipe, "stream", ("a dog",), dict(seed=2, timesteps=3, superres=False))
        deadline = time.monotonic() + 10
        while b.waiting == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert b.waiting == 1
        waiting.cancel()  # a page closed while its request waited its turn
        assert list(waiting) == [] and waiting.done and b.waiting == 0  # at once: nothing decoded, no error
        assert len(list(first)) == 24 - 1  # the request decoding goes on to its end
        assert b.stats.admitted == 1


# ----- the scheduler, on stand-in networks -------------------------------------------------------------


@dataclass(frozen=True)
class FakeCall:
    """A forward of a stand-in network: value * 2, or an error for a poisoned input."""

    value: float
    images: int = 1
    poisoned: bool = False
    log: Optional[list] = None
    name: str = ""

    @property
    def key(self) -> str:
        return "net"

    def alone(self) -> float:
        return self.together([self])[0]

    @staticmethod
    def together(calls):
        time.sleep(0.01)  # a pass takes a while: requests arriving meanwhile wait for the next one
        if any(c.poisoned for c in calls):
            raise ValueError("a bad input" + (" in the batch" if len(calls) > 1 else ""))
        if calls[0].log is not None:
            calls[0].log.append({c.name: c.images for c in calls})
        return [c.value * 2 for c in calls]


def _request(name: str, steps: int, images: int = 1, poison_at: Optional[int] = None, log: Optional[list] = None):
    for step in range(steps):
        yield name, run_forward(FakeCall(step, images, step == poison_at, log, name))


def test_a_batch_that_raises_is_run_again_call_by_call():
    with Batcher(threads=1, gather_s=1.0) as b:
        jobs = [b.stream(_request, "bad", 4, poison_at=2)] + [b.stream(_request, f"ok{i}", 4) for i in range(3)]
        with pytest.raises(ValueError, match="a bad input"):
            list(jobs[0])
        for i, job in enumerate(jobs[1:]):
            assert list(job) == [(f"ok{i}", 2.0 * s) for s in range(4)]
        assert b.stats.retried >= 1 and b.stats.shared >= 1


def test_max_batch_bounds_the_images_and_the_line_is_first_come_first_served():
    passes = []
    with Batcher(max_batch=3, threads=1) as b:
        jobs = []
        for i, images in enumerate([2, 2, 1, 1, 4]):
            jobs.append(b.stream(_request, f"r{i}", 5, images=images, log=passes))
            time.sleep(0.02)  # arrival order, while r0 still decodes
        for job in jobs:
            list(job)
        assert b.stats.admitted == 5 and b.stats.most_images == 4  # the 4-image request ran alone
    assert max(sum(p.values()) for p in passes if "r4" not in p) <= 3
    # r2 (1 image) would have fitted beside r0 but waited behind r1 (2 images), which did not
    assert not any("r0" in p and ("r1" in p or "r2" in p) for p in passes)


def test_threads_end_with_their_requests():
    before = threading.active_count()
    with Batcher(threads=1) as b:
        jobs = [b.stream(_request, f"r{i}", 3) for i in range(30)]
        for job in jobs:
            list(job)
        for job in jobs:
            job.result(10)
        assert b.active == 0 and b.waiting == 0
    deadline = time.monotonic() + 10
    while threading.active_count() > before + 1 and time.monotonic() < deadline:  # the scheduler may linger
        time.sleep(0.05)
    assert threading.active_count() <= before + 1


def test_closing_the_batcher_cancels_its_requests():
    b = Batcher(threads=1)
    job = b.stream(_request, "r", 10**6)
    next(job)
    b.close()
    with pytest.raises(Cancelled):
        list(job)
    with pytest.raises(RuntimeError, match="closed"):
        b.stream(_request, "late", 1)


def test_without_a_batcher_forwards_run_at_once():
    assert run_forward(FakeCall(3.0)) == 6.0


def test_the_maximum_batch_comes_from_the_device_or_the_environment():
    assert default_max_batch("cpu", {}) == 16 and default_max_batch("cuda", {}) == 64
    assert default_max_batch("cpu", {"MUSE_MAX_BATCH": "4"}) == 4
    with pytest.raises(ValueError, match="MUSE_MAX_BATCH"):
        default_max_batch("cpu", {"MUSE_MAX_BATCH": "0"})
    with pytest.raises(ValueError, match="max_batch"):
        Batcher(max_batch=0)
