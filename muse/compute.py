"""One thread for torch's work in a server process.

torch's CPU kernels run their parallel loops on OpenMP (GNU libgomp in the PyPI builds). Each thread that
starts a parallel region gets a pool of OpenMP workers of its own, kept while that thread lives. Once a
process holds more pooled threads than it has cores, libgomp stops spin-waiting between regions: every
region then puts its workers to sleep and wakes them again, and the small kernels of a step cost several
times as much. Measured on the 2-core test machine: a layer norm of 256x64 takes 20 us from the first
thread that uses torch and 60-95 us from a second one (two context switches per call); the shipped model's
`pipe(prompt)` takes 0.35 s from one thread and 0.55-0.80 s from the next, slower than torch on a single
thread (0.54 s).

A web server runs handlers on whichever of its worker threads is free (Gradio streams each step of a
generator from its thread pool), so without care every thread that once ran a step keeps a pool. Here all
of the playground's torch work (loading, warm-up, each decoding step) runs on one long-lived thread,
`COMPUTE`, and the process keeps a single pool.

A server also has other work while it decodes: Gradio's processing of each update, encoding pictures,
HTTP, and for someone running the playground on their own machine, the browser drawing the steps. OpenMP's
workers spin on every core they are given and starve that work, so a server decodes on one core fewer
than the machine has (`server_threads`; MUSE_THREADS overrides it).
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Callable, Iterator, Optional, TypeVar

T = TypeVar("T")
_END = object()


class ComputeThread:
    """A single worker thread that runs the calls given to it one at a time, in order. A call made from
    that thread itself runs at once (no deadlock). The thread is started on first use and again in a
    forked child, which inherits no threads."""

    def __init__(self, name: str = "muse-compute") -> None:
        self.name = name
        self._lock = threading.Lock()
        self._executor: Optional[ThreadPoolExecutor] = None
        self._pid: Optional[int] = None
        self._ident: Optional[int] = None

    def _pool(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._executor is None or self._pid != os.getpid():
                self._executor = ThreadPoolExecutor(1, thread_name_prefix=self.name, initializer=self._started)
                self._pid, self._ident = os.getpid(), None
            return self._executor

    def _started(self) -> None:
        self._ident = threading.get_ident()

    def on_thread(self) -> bool:
        """Whether the caller is the compute thread."""
        return self._ident == threading.get_ident() and self._pid == os.getpid()

    def submit(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> Future:
        """Queue `fn(*args, **kwargs)` on the compute thread; its Future."""
        if self.on_thread():
            future: Future = Future()
            try:
                future.set_result(fn(*args, **kwargs))
            except BaseException as err:  # handed to the caller, as the executor would
                future.set_exception(err)
            return future
        return self._pool().submit(fn, *args, **kwargs)

    def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """`fn(*args, **kwargs)` run on the compute thread; its result, or its exception raised here."""
        if self.on_thread():
            return fn(*args, **kwargs)
        return self.submit(fn, *args, **kwargs).result()

    def shutdown(self) -> None:
        """Let the thread end once its queued calls are done (a later call starts a new one)."""
        with self._lock:
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=False)

    def set_threads(self, threads: int) -> None:
        """torch's intra-op threads for the work of this thread (set on it: OpenMP keeps the count per
        thread)."""
        import torch

        self.call(torch.set_num_threads, threads)

    def iterate(self, items: Iterator[T]) -> Iterator[T]:
        """`items` advanced on the compute thread, each item handed to the caller's thread. Closing this
        iterator (a cancelled request) closes `items` there too, so its cleanup runs at once."""
        try:
            while True:
                item = self.call(next, items, _END)
                if item is _END:
                    return
                yield item
        finally:
            close = getattr(items, "close", None)
            if close is not None:
                self.call(close)


def server_threads(environ: Optional[dict[str, str]] = None) -> int:
    """torch's threads for a server's decoding: MUSE_THREADS when set, else one fewer than the cores this
    process may run on, at least 1. A ValueError names a MUSE_THREADS that is not a whole number >= 1."""
    raw = (os.environ if environ is None else environ).get("MUSE_THREADS", "").strip()
    if raw:
        if not raw.isdigit() or int(raw) < 1:
            raise ValueError(f"MUSE_THREADS must be a whole number of threads, 1 or more; got {raw!r}.")
        return int(raw)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, cores - 1)


COMPUTE = ComputeThread()
