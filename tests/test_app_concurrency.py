"""Requests decoding at the same time in the playground: they share the batcher's forward passes
(`muse.batching`), and each still gets its own run. Through a live server on 127.0.0.1 driven by
gradio_client (`python app.py`, tiny random model), and through the handlers called from several threads.

Images are compared with the library's (`pipe(prompt, ...)` on the same weights and settings) bit for bit:
the server decodes on one torch thread (MUSE_THREADS=1), where a batched request's ids equal its solo run's
(tests/test_batching.py), and so does the library call here."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Iterator

import gradio as gr
import numpy as np
import pytest
import torch
from PIL import Image

from muse import playground
from muse.load import load_pipeline
from muse.pipeline import MusePipeline
from muse.playground import OUTPUTS

from .harness import LiveApp, running_app

pytestmark = pytest.mark.slow

PROMPTS = ("grinning face", "red heart", "rocket", "cat face")
STATUS, FILES = OUTPUTS.index("status"), OUTPUTS.index("files")


@pytest.fixture(scope="module")
def served(tiny_weights) -> Iterator[Path]:
    """MUSE_WEIGHTS at the tiny weights in this process too, for the page's defaults and checks."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MUSE_WEIGHTS", str(tiny_weights))
        yield tiny_weights


@pytest.fixture(scope="module")
def library(served):
    """`image(prompt, seed, **settings)`: the library's image for a request the page would send (the page's
    defaults, then `settings`), on one torch thread."""
    pipe = load_pipeline(served)

    def image(prompt: str, seed: int, **settings: Any) -> np.ndarray:
        values = {**playground.page_defaults(), "randomize_seed": False, "num_images": 1, **settings, "seed": seed}
        request = playground.check_request(prompt, values)
        before = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            out = pipe(request.prompt, **request.pipeline_kwargs(pipe))[0]
        finally:
            torch.set_num_threads(before)
        return np.asarray(out.convert("RGB"))

    return image


@pytest.fixture(scope="module")
def live(served, tmp_path_factory) -> Iterator[LiveApp]:
    # every step streamed; one torch thread (exact ids); room for all the clients below in one batch
    env = {"MUSE_STREAM_FPS": "0", "MUSE_THREADS": "1", "MUSE_MAX_BATCH": "8"}
    with running_app(served, tmp_path_factory.mktemp("concurrency") / "app.log", env=env) as app:
        yield app


def client(url: str):
    from gradio_client import Client

    return Client(url, verbose=False, analytics_enabled=False)


def final_png(outputs: tuple) -> np.ndarray:
    png = next(f for f in outputs[FILES] if f.endswith(".png"))
    with Image.open(png) as im:
        return np.asarray(im.convert("RGB"))


def wait_for_updates(job, count: int, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while len(job.outputs()) < count:
        assert not job.done(), "the request ended before it streamed enough updates"
        assert time.monotonic() < deadline, "no updates"
        time.sleep(0.01)


def finish(job, timeout: float = 180.0) -> list:
    """A job's updates once it has ended (polled: gradio_client's iterator does not end on an error)."""
    deadline = time.monotonic() + timeout
    while not job.done():
        assert time.monotonic() < deadline, "the request did not end"
        time.sleep(0.01)
    job.result()  # its error, if any
    return job.outputs()


def start_together(url: str, requests: list[dict[str, Any]]) -> list:
    """Submit every request at the same moment, each from a client of its own; their jobs."""
    clients = [client(url) for _ in requests]
    gate = threading.Barrier(len(requests))

    def submit(i: int):
        gate.wait()
        return clients[i].submit(**requests[i], api_name="/generate")

    with ThreadPoolExecutor(len(requests)) as pool:
        return list(pool.map(submit, range(len(requests))))


def request_for(i: int, **overrides: Any) -> dict[str, Any]:
    return {**dict(prompt=PROMPTS[i % len(PROMPTS)], seed=100 + i, randomize_seed=False, timesteps=6,
                   superres=True, order="confidence"), **overrides}


def library_kwargs(request: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in request.items() if k not in ("prompt", "seed", "randomize_seed")}


def test_concurrent_clients_each_get_the_librarys_image_for_their_prompt_and_seed(live, library):
    requests = [request_for(i) for i in range(4)]
    jobs = start_together(live.url, requests)
    for request, job in zip(requests, jobs):
        outputs = finish(job)
        assert outputs[-1][STATUS].startswith("done")
        # every streamed step of this page is its own run's
        assert all(f"seed {request['seed']}" in o[STATUS] for o in outputs[:-2]), [o[STATUS] for o in outputs]
        assert len(outputs) == 2 * request["timesteps"] + 1  # each step of both stages, the result twice
        expected = library(request["prompt"], request["seed"], **library_kwargs(request))
        assert np.array_equal(final_png(outputs[-1]), expected), request


def test_cancelling_one_concurrent_client_leaves_the_others_finishing(live, library):
    requests = [request_for(i, timesteps=48, superres=False) for i in range(3)]
    jobs = start_together(live.url, requests)
    for job in jobs:
        wait_for_updates(job, 2)
    stops = live.log_path.read_text(errors="replace").count("request stopped after")
    assert jobs[0].cancel()
    for request, job in zip(requests[1:], jobs[1:]):
        outputs = finish(job)
        assert outputs[-1][STATUS].startswith("done")
        expected = library(request["prompt"], request["seed"], **library_kwargs(request))
        assert np.array_equal(final_png(outputs[-1]), expected), request
    # the cancelled one stopped decoding before its end (its stream was closed, not left running)
    deadline = time.monotonic() + 10
    while live.log_path.read_text(errors="replace").count("request stopped after") <= stops:
        assert time.monotonic() < deadline, "the cancelled request did not stop"
        time.sleep(0.05)
    out = client(live.url).predict(prompt="red heart", timesteps=2, superres=False, api_name="/generate")
    assert out[STATUS].startswith("done")


def test_a_failing_request_among_concurrent_ones_affects_only_itself(live, library):
    from gradio_client.exceptions import AppError

    requests = [request_for(0), request_for(1, cond_scale=1e9), request_for(2)]  # the second fails its checks
    jobs = start_together(live.url, requests)
    with pytest.raises(AppError) as err:
        finish(jobs[1])
    assert "cond_scale must be" in str(err.value) and "Traceback" not in str(err.value)
    for request, job in ((requests[0], jobs[0]), (requests[2], jobs[2])):
        outputs = finish(job)
        expected = library(request["prompt"], request["seed"], **library_kwargs(request))
        assert np.array_equal(final_png(outputs[-1]), expected), request
    assert "request failed" not in live.log_path.read_text(errors="replace")  # no unexpected error


# ----- the handlers called from several threads (no server) ------------------------------------------


@pytest.fixture(scope="module")
def app(served):
    """app.py in this process, every step streamed, its passes on one torch thread (as the server above)."""
    import app as module
    from muse.compute import COMPUTE

    before = COMPUTE.call(torch.get_num_threads)
    COMPUTE.set_threads(1)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(module.endpoints, "FRAME_S", 0.0)
        yield module
    COMPUTE.set_threads(before)


def run_handler(handler, **kwargs: Any) -> list[dict[str, Any]]:
    return [dict(zip(OUTPUTS, update)) for update in handler(**kwargs)]


def test_a_request_that_raises_mid_run_ends_only_itself(app, library, monkeypatch):
    """A request whose decoding raises at its third step gets the server's message; the requests decoding
    beside it (sharing its passes until then) finish with their own images."""
    real_stream = MusePipeline.stream

    def stream(self, prompt, *args, **kwargs):
        for step in real_stream(self, prompt, *args, **kwargs):
            if prompt == "boom" and step.step == 3:
                raise RuntimeError("a fault in the middle of a run")
            yield step

    monkeypatch.setattr(MusePipeline, "stream", stream)
    requests = [dict(request_for(i, timesteps=8, previews=False)) for i in range(3)]
    requests[1]["prompt"] = "boom"
    results: list[Any] = [None] * 3
    gate = threading.Barrier(3)

    def user(i: int) -> None:
        gate.wait()
        try:
            results[i] = run_handler(app.generate, **requests[i])
        except gr.Error as err:
            results[i] = err

    threads = [threading.Thread(target=user, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(180)
    assert isinstance(results[1], gr.Error) and "Something went wrong on the server" in str(results[1])
    for i in (0, 2):
        final = results[i][-1]
        assert final["status"].startswith("done"), final["status"]
        png = next(f for f in final["files"] if f.endswith(".png"))
        with Image.open(png) as im:
            ours = np.asarray(im.convert("RGB"))
        request = requests[i]
        assert np.array_equal(ours, library(request["prompt"], request["seed"], **library_kwargs(request)))
