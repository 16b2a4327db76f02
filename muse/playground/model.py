"""The served model (`MODEL`): MUSE_WEIGHTS, or the shipped weights, loaded once, on first use or in the
background while the server starts; and the process's batcher (`batcher()`), through which every request
decodes, sharing each step's forward pass with the requests decoding at the same time (`muse.batching`)."""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import threading
import time
from concurrent.futures import Future
from typing import Callable, Optional

import torch

from ..batching import Batcher, default_max_batch
from ..compute import COMPUTE
from ..hub import WeightsError
from ..load import load_pipeline
from ..token_pipeline import TokenPipeline
from .errors import PlaygroundError

log = logging.getLogger("muse.app")  # one logger for the playground, whichever module writes


class LazyModel:
    """Loads MUSE_WEIGHTS (or the shipped weights) on the first request; failures are not cached."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pipe: Optional[TokenPipeline] = None
        self._source: Optional[str] = None
        # MUSE_COMPILE=1 compiles the transformers, except where torch.compile cannot run (ZeroGPU).
        self.allow_compile = True
        self._starting = False  # a background load (and its warm-up) is under way
        self.start_error: Optional[str] = None  # why the background load failed, for the page to say

    def is_starting(self) -> bool:
        """Whether the background load (`load_in_background`) or its warm-up is still under way."""
        return self._starting

    def is_ready(self) -> bool:
        """Loaded and warmed up: a request now does not wait for the model."""
        return self.loaded() is not None and not self._starting

    @staticmethod
    def source() -> Optional[str]:
        return os.environ.get("MUSE_WEIGHTS") or None

    def loaded(self) -> Optional[TokenPipeline]:
        """The model if it is loaded (from the current source), without loading it."""
        return self._pipe if self._pipe is not None and self._source == self.source() else None

    def get(self) -> TokenPipeline:
        """The model, loaded now if it is not (or MUSE_WEIGHTS changed); a PlaygroundError if it cannot be."""
        source = self.source()
        with self._lock:
            if self._pipe is None or self._source != source:
                self._pipe = None
                where = source or "the shipped weights/ folder"
                try:
                    self._pipe = load_pipeline(source)
                    if os.environ.get("MUSE_COMPILE", "").strip() in ("1", "true", "yes"):
                        if self.allow_compile:
                            self._pipe.compile()  # meant for a GPU: see muse.compiled
                        else:
                            log.info("MUSE_COMPILE is ignored here: torch.compile does not run on ZeroGPU")
                except WeightsError as err:
                    raise PlaygroundError(f"The model is not available ({where}): {err}. Set MUSE_WEIGHTS to a "
                                          "model folder or a Hugging Face Hub repo id.", title="No model") from None
                except Exception:
                    log.exception("loading the model from %s failed", where)
                    raise PlaygroundError(f"The model ({where}) could not be loaded; the server log has the "
                                          "details.", title="No model") from None
                self._source = source
                log.info("loaded the model from %s on %s", where, self._pipe.device)
        return self._pipe

    def load_in_background(self, warm_up: Optional[Callable[[TokenPipeline], None]] = None) -> Future:
        """Start loading the model now, on the compute thread (`muse.compute`, where the forward passes run), so
        the server can answer (and the page open) meanwhile; a request that comes first waits for it. A
        failure is logged and retried by the next request.
        `warm_up(pipe)`: then run once what a request runs (`muse.playground.pictures.warm_up`), so the first
        request does not pay for first calls (kernels chosen, fonts and colour maps loaded)."""
        def load() -> None:
            try:
                pipe = self.get()
                self.start_error = None
                if warm_up is not None:
                    started = time.perf_counter()
                    with self._lock, torch.inference_mode():
                        warm_up(pipe)
                    log.info("warmed up in %.1f s", time.perf_counter() - started)
            except PlaygroundError as err:
                self.start_error = str(err)
                log.warning("the model did not load at start: %s", err)
            finally:
                self._starting = False

        self._starting = True
        return COMPUTE.submit(load)


MODEL = LazyModel()


def max_batch() -> int:
    """Images decoding at once: MUSE_MAX_BATCH, else the default for the device the model runs on (a GPU's
    where there is one: `muse.batching.default_max_batch`); 1 decodes one request at a time. A ValueError
    names a MUSE_MAX_BATCH that is not a whole number >= 1."""
    pipe = MODEL.loaded()
    return default_max_batch(pipe.device if pipe is not None else None)


_BATCHER: list[Batcher] = []
_BATCHER_LOCK = threading.Lock()


def batcher() -> Batcher:
    """The process's batcher, made on first use: `max_batch()` images at once, its passes on the compute
    thread (`muse.compute.COMPUTE`, whose torch threads the server sets before serving)."""
    with _BATCHER_LOCK:
        if not _BATCHER:
            _BATCHER.append(Batcher(max_batch(), compute=COMPUTE))
        return _BATCHER[0]


def _libc_trim() -> Optional[Callable[[int], int]]:
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError):  # not glibc
        return None


_MALLOC_TRIM = _libc_trim()


def release_memory() -> bool:
    """When no request is decoding, hand the memory the requests freed back to the system; whether it ran.
    Requests decoding at once each allocate on a thread of their own (`muse.batching`), and glibc keeps what
    a thread's arena freed for later, so without this the process keeps the peak of the busiest moment
    (measured: +11 % resident memory after 8 clients at once, tests/test_robustness.py)."""
    if _MALLOC_TRIM is None or not _BATCHER or _BATCHER[0].active or _BATCHER[0].waiting:
        return False
    _MALLOC_TRIM(0)
    return True
