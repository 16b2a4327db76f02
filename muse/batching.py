"""Continuous batching: the forward passes of requests decoding at the same time run as one batch per step.

A server hands each request to a `Batcher` (`stream` for a generator such as `pipe.stream(...)`, `submit`
for a call such as `pipe(...)`) and reads it back as a `Job`. The request's own code runs unchanged:
its sampler draws from its own `torch.Generator` with its own settings, and its logits and critic
functions (`muse.guidance`, aMUSEd's `AmusedLogits`) call their network through `run_forward`. Inside a
job that call is handed to the batcher, which gathers the forwards waiting for the same network and runs
them as one pass on its compute thread (`muse.compute`), each request's guidance rows, positions and
context included (`MaskedTransformer.forward_many`), then hands each request its own rows back. Outside a
job, `run_forward` calls the network at once, as it always did.

    batcher = Batcher()                          # a server: Batcher(compute=muse.compute.COMPUTE)
    job = batcher.stream(pipe.stream, "a cat", seed=1)
    for step in job:                             # each DecodeStep as soon as it is made
        ...                                      # job.cancel() (or job.close()) to stop it
    ids = batcher.submit(pipe, "a dog", output_type="ids").result()

Why a thread per request, and not generators stepped by hand: the place where a request waits for the
batch is inside its logits function, several calls below `pipe.stream`'s `next()` (stream -> stage
runner -> decode -> logits function). A Python generator cannot be suspended from inside a call it makes,
so stepping requests by hand would mean rewriting the sampler, both samplers' rules, the stage runner and
every pipeline method as coroutines that yield their forward passes, for MUSE and aMUSEd alike, and every
later change to them would have to keep that shape. A thread blocked in `run_forward` is that suspension
point for free, and the request's code path is the very one it runs alone: its randomness, its per-row
settings (guidance scale and schedule, critic, order, temperature) and its stage plans are untouched.
The cost of threads is kept small:
- each job thread runs torch on one intra-op thread, so it never starts an OpenMP pool of its own (the
  pools of many threads slow every kernel of the process: `muse.compute`); its work between forwards is
  small (a step's sampling, its pictures) and overlaps the batch on the compute thread;
- the networks run only on the one compute thread, with the threads it was given;
- which requests share a pass depends on timing, but a request's results do not: every row of a batch
  goes through the same operations as alone (see "Exactness").

Scheduling. A request enters (is admitted) at its first forward, in arrival order, when its images fit
under `max_batch` beside those decoding already (or nothing else decodes); otherwise it waits in line.
So a request whose settings or inputs fail their checks, which run before its first forward, never
enters. A pass starts when every admitted request is waiting for a forward (a step in lockstep, the
fullest batch there is) or the oldest waiting forward has waited `gather_s`; it runs the forwards of the
oldest one's network (the others run next). Where a pass takes longer than `gather_s` (a CPU), requests
settle into cohorts whose passes alternate: one cohort's sampling and pictures run while the other's pass
does. A request that arrives mid-run joins at its next forward; one cancelled leaves at its next forward
(`Job.cancel`, or closing the job); one that raises ends alone; a pass that raises is run again call by
call, so only the request whose inputs broke it gets the error. A job's code should wait on nothing but
its forwards (pace a stream on the reader's side): while it runs, the others' passes wait for it up to
`gather_s`.

Exactness. In float32 on the 2-core test machine (Intel Xeon 2.8 GHz, AVX-512; torch 2.13 with MKL) and
one intra-op thread, a request's ids equal its solo run's bit for bit (tests/test_batching.py, for MUSE
and the tiny aMUSEd): every block but the last computes each row alike in any batch, and the last block,
whose rows are the positions a request asks for, runs request by request (`MaskedTransformer._run`).
With more intra-op threads MKL splits the sums of a product of one image's 64 rows differently from
those of many, so logits differ from the solo run's in their last bits and a near tie can go the other
way: on the shipped weights with two threads, 7 of 8 requests equal, 98.8 % of tokens. A GPU's kernels
also choose their method by shape, so there bits are not sought: the last block runs once for all
requests too, their positions padded (`forward_many(exact=False)`), instead of a kernel launch per request
(not measured on a GPU yet).

A side effect to know: torch keeps the last thread count set anywhere as the default of threads that
start using it later, so after a job thread sets its one thread, a new thread of the process runs torch
on one thread unless it sets its own (`muse.compute.ComputeThread.set_threads` does).
"""

from __future__ import annotations

import collections
import contextvars
import itertools
import os
import queue
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Generic, Hashable, Iterator, Optional, Protocol, Sequence, TypeVar, Union

import torch

from .compute import ComputeThread
from .transformer import ForwardInputs

T = TypeVar("T")

# Images decoding at once, by device type: on a CPU a pass costs about as much per image at 1 as at 8 images
# (benchmarks/README.md, concurrency.py), so more than a full request's worth (`muse.settings.MAX_IMAGES`)
# would only lengthen every step; on a GPU a pass of tens of images costs little more than one.
DEFAULT_MAX_BATCH = {"cpu": 16, "cuda": 64}
GATHER_S = 0.05  # the longest a waiting forward waits for requests still busy with their own work


class Cancelled(BaseException):
    """Raised in a cancelled request's thread at its next forward (a BaseException, as GeneratorExit is:
    a request's `except Exception` must not swallow it); its job's reader sees the end of the job."""


class Batchable(Protocol):
    """One request's forward pass, which may share a batch with others of the same `key`."""

    @property
    def key(self) -> Optional[Hashable]:
        """Calls of equal keys run as one batch (the same network, called the same way); None: always alone."""

    @property
    def images(self) -> int:
        """The request's images (rows of ids): what `Batcher.max_batch` counts."""

    def alone(self) -> Any:
        """The forward as the request would run it without a batcher."""

    @staticmethod
    def together(calls: Sequence["Batchable"]) -> list[Any]:
        """Calls of one key as one batch: each call's result, equal to its `alone()`."""


@dataclass(frozen=True)
class TransformerCall:
    """A MUSE transformer's forward for one request (made by `muse.guidance`'s functions): the model's
    (out, embed), as `MaskedTransformer.forward` returns them."""

    model: torch.nn.Module  # a MaskedTransformer, or a stand-in with its call signature
    inputs: ForwardInputs
    self_cond_embed: Optional[torch.Tensor] = None  # a self-conditioned model's carried embedding

    @property
    def key(self) -> Optional[Hashable]:
        config = getattr(self.model, "config", None)
        if getattr(config, "self_cond", False) or not hasattr(self.model, "forward_many"):
            return None  # a self-conditioned model carries per-request state through its input: alone
        return self.model

    @property
    def images(self) -> int:
        return int(self.inputs.ids.shape[0])

    def alone(self) -> tuple[torch.Tensor, torch.Tensor]:
        i = self.inputs
        return self.model(i.ids, i.context, self_cond_embed=self.self_cond_embed, positions=i.positions,
                          repeat=i.repeat, token_features=i.token_features)

    @staticmethod
    def together(calls: Sequence["TransformerCall"]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        # Bit for bit on a CPU; on a GPU, where kernels choose by shape anyway, the last block runs once
        # for all calls rather than a launch per call (`MaskedTransformer.forward_many`).
        exact = calls[0].inputs.ids.device.type == "cpu"
        return calls[0].model.forward_many([c.inputs for c in calls], exact=exact)


_JOB: contextvars.ContextVar[Optional["Job"]] = contextvars.ContextVar("muse_batching_job", default=None)


def run_forward(call: Batchable) -> Any:
    """`call`'s result: through the batcher of the job this thread runs (shared with the other requests
    decoding), else at once (`call.alone()`)."""
    job = _JOB.get()
    if job is None:
        return call.alone()
    return job._batcher._forward(job, call)


def current_job() -> Optional["Job"]:
    """The job the calling thread runs (None outside one): a request's code may ask how its reader keeps up."""
    return _JOB.get()


def default_max_batch(device: Union[str, torch.device, None] = None, environ: Optional[dict[str, str]] = None) -> int:
    """Images decoding at once: MUSE_MAX_BATCH when set, else `DEFAULT_MAX_BATCH` for the device's type
    (None: a GPU's when there is one, else a CPU's; another accelerator counts as a GPU). A ValueError names
    a MUSE_MAX_BATCH that is not a whole number >= 1."""
    raw = (os.environ if environ is None else environ).get("MUSE_MAX_BATCH", "").strip()
    if raw:
        if not raw.isdigit() or int(raw) < 1:
            raise ValueError(f"MUSE_MAX_BATCH must be a whole number of images, 1 or more; got {raw!r}.")
        return int(raw)
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    return DEFAULT_MAX_BATCH.get(torch.device(device).type, DEFAULT_MAX_BATCH["cuda"])


@dataclass
class BatchStats:
    """What a batcher has run, for tests and benchmarks."""

    admitted: int = 0  # requests that entered (reached their first forward)
    passes: int = 0  # forward passes run
    calls: int = 0  # request forwards they served
    shared: int = 0  # passes that served more than one request
    most_calls: int = 0  # the most request forwards in one pass
    most_images: int = 0  # the most images decoding at once
    retried: int = 0  # passes that raised and were run again call by call


@dataclass(eq=False)
class _Pending:
    job: "Job"
    call: Batchable
    since: float
    taken: bool = False  # in a pass now: no longer cancellable
    done: bool = False
    result: Any = None
    error: Optional[BaseException] = None


@dataclass(frozen=True)
class _End:
    error: Optional[BaseException]


class Job(Generic[T]):
    """A request running under a `Batcher`. Iterate it for what its generator yields, in order (a `submit`
    yields nothing); its error is raised where it happened, after the items before it. `result()` waits
    for the end. `cancel()` (or `close()`) makes it leave at its next forward; iteration then ends."""

    _ids = itertools.count(1)

    def __init__(self, batcher: "Batcher", fn: Callable[..., Any], args: tuple, kwargs: dict, streams: bool):
        self._batcher, self._fn, self._args, self._kwargs, self._streams = batcher, fn, args, kwargs, streams
        self.name = f"muse-request-{next(self._ids)}"
        self._items: queue.SimpleQueue = queue.SimpleQueue()
        self._ended = threading.Event()
        self._finished = False  # the reader has seen the end
        self._value: Any = None
        self._error: Optional[BaseException] = None
        # Scheduling state, guarded by the batcher's lock: "new" (not yet at a forward), "line" (waiting to
        # enter), "own" (entered, running its own code), "waiting" (its forward pending), "pass" (its forward
        # running), "done".
        self.state = "new"
        self.images = 0
        self.cancelled = False
        self._by_reader = False  # cancelled by its reader (who expects the end, not an error)

    # ----- the reader's side -------------------------------------------------------------------------

    def __iter__(self) -> "Job[T]":
        return self

    def __next__(self) -> T:
        if self._finished:
            raise StopIteration
        item = self._items.get()
        if isinstance(item, _End):
            self._finished = True
            if item.error is not None and not (isinstance(item.error, Cancelled) and self._by_reader):
                raise item.error
            raise StopIteration
        return item

    def cancel(self) -> None:
        """Leave at the next forward (at once when waiting to enter or for a pass not yet started)."""
        self._by_reader = True
        self._batcher._cancel(self)

    close = cancel  # a generator's name for it: a reader that stops early closes what it reads

    @property
    def unread(self) -> int:
        """Items the request has made that its reader has not taken yet (a stream can skip drawing what its
        reader could not take in time: `muse.playground.stream.Pace`)."""
        return self._items.qsize()

    @property
    def done(self) -> bool:
        """Whether the request has ended (finished, raised or left after a cancel)."""
        return self._ended.is_set()

    def result(self, timeout: Optional[float] = None) -> Any:
        """The function's return value (`submit`; None for `stream`), waiting up to `timeout` seconds for
        the end; its error raised here. A TimeoutError when it has not ended in time."""
        if not self._ended.wait(timeout):
            raise TimeoutError(f"{self.name} has not ended after {timeout} s")
        if self._error is not None:
            raise self._error
        return self._value

    # ----- the request's thread ------------------------------------------------------------------------

    def _run(self) -> None:
        _JOB.set(self)
        # One intra-op thread: no OpenMP pool of this thread's own (see the module docstring).
        torch.set_num_threads(1)
        out = None
        try:
            out = self._fn(*self._args, **self._kwargs)
            if self._streams:
                for item in out:
                    self._items.put(item)
                    if self.cancelled:
                        raise Cancelled()
            else:
                self._value = out
        except BaseException as err:  # handed to the reader: the thread itself ends quietly
            self._error = err
        finally:
            close = getattr(out, "close", None) if self._streams else None
            if close is not None:
                try:
                    close()  # a generator left early runs its cleanup now
                except Exception:
                    pass
            self._fn = self._args = self._kwargs = None  # the request's references go with it
            self._batcher._leave(self)
            self._ended.set()
            self._items.put(_End(self._error))


class Batcher:
    """Runs requests (`stream`, `submit`) so that their forward passes share one batch per step.

    max_batch: images decoding at once (default `default_max_batch()`); a request that would go past it
    waits in line until enough images have finished, and one larger than it runs alone.
    compute: the thread the networks run on (default: one of the batcher's own, with `threads` intra-op
    threads, default the creating thread's count). A server passes `muse.compute.COMPUTE`, whose thread
    count it sets itself. gather_s: the longest a pass waits for requests still busy with their own work.
    """

    def __init__(self, max_batch: Optional[int] = None, *, compute: Optional[ComputeThread] = None,
                 threads: Optional[int] = None, gather_s: float = GATHER_S):
        self.max_batch = default_max_batch() if max_batch is None else int(max_batch)
        if self.max_batch < 1:
            raise ValueError(f"max_batch must be 1 or more images, got {max_batch}")
        self._own_compute = compute is None
        self.compute = compute or ComputeThread("muse-batch")
        self.threads = threads if threads is not None else torch.get_num_threads()
        self.gather_s = float(gather_s)
        self._reset()

    def _reset(self) -> None:
        self._cond = threading.Condition()
        self._line: collections.deque[Job] = collections.deque()
        self._admitted: list[Job] = []
        self._pending: list[_Pending] = []
        self._scheduler: Optional[threading.Thread] = None
        self._closed = False
        self._pid = os.getpid()
        self.stats = BatchStats()

    # ----- public API ------------------------------------------------------------------------------------

    def stream(self, fn: Callable[..., Iterator[T]], *args: Any, **kwargs: Any) -> Job[T]:
        """Start `fn(*args, **kwargs)` (a generator, e.g. `pipe.stream`) as a request; its items through the
        returned job, as soon as they are made (the request does not wait for its reader)."""
        return self._start(fn, args, kwargs, streams=True)

    def submit(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> Job[T]:
        """Start `fn(*args, **kwargs)` (e.g. `pipe(prompt, output_type="ids")`) as a request; `result()` of
        the returned job gives its value."""
        return self._start(fn, args, kwargs, streams=False)

    def close(self) -> None:
        """Cancel every request and stop the scheduler, and the compute thread when it is the batcher's own."""
        with self._cond:
            self._closed = True
            for job in list(self._line) + self._admitted:
                job.cancelled = True
            self._cond.notify_all()
        if self._own_compute:
            self.compute.shutdown()

    def __enter__(self) -> "Batcher":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    @property
    def active(self) -> int:
        """Requests that have entered and not ended."""
        with self._cond:
            return len(self._admitted)

    @property
    def waiting(self) -> int:
        """Requests waiting in line to enter."""
        with self._cond:
            return len(self._line)

    # ----- requests ---------------------------------------------------------------------------------------

    def _start(self, fn: Callable[..., Any], args: tuple, kwargs: dict, streams: bool) -> Job:
        if self._pid != os.getpid():  # a forked child inherits no threads
            self._reset()
        if self._closed:
            raise RuntimeError("this batcher is closed")
        with self._cond:
            if self._scheduler is None:
                if self._own_compute:
                    self.compute.submit(torch.set_num_threads, self.threads)  # queued before any pass
                self._scheduler = threading.Thread(target=self._loop, name="muse-batch-scheduler", daemon=True)
                self._scheduler.start()
        job = Job(self, fn, args, kwargs, streams)
        threading.Thread(target=job._run, name=job.name, daemon=True).start()
        return job

    def _cancel(self, job: Job) -> None:
        with self._cond:
            job.cancelled = True
            if job.state == "line":
                self._line.remove(job)
                job.state = "new"
            self._cond.notify_all()

    def _leave(self, job: Job) -> None:
        with self._cond:
            if job in self._line:
                self._line.remove(job)
            if job in self._admitted:
                self._admitted.remove(job)
            self._pending = [p for p in self._pending if p.job is not job or p.taken]
            job.state = "done"
            self._admit()
            self._cond.notify_all()

    def _admit(self) -> None:
        """Let in the requests at the head of the line while their images fit (lock held)."""
        while self._line:
            job = self._line[0]
            used = sum(j.images for j in self._admitted)
            if self._admitted and used + job.images > self.max_batch:
                return
            self._line.popleft()
            self._admitted.append(job)
            job.state = "own"
            self.stats.admitted += 1
            self.stats.most_images = max(self.stats.most_images, used + job.images)
            self._cond.notify_all()

    def _forward(self, job: Job, call: Batchable) -> Any:
        """A job thread's forward: enter if not yet in, wait for a pass to run it, its result."""
        with self._cond:
            if job.state == "new":
                if job.cancelled or self._closed:
                    raise Cancelled()
                job.images, job.state = call.images, "line"
                self._line.append(job)
                self._admit()
            while job.state == "line" or job.state == "new":
                if job.cancelled or self._closed:
                    raise Cancelled()
                self._cond.wait()
            if job.cancelled:
                raise Cancelled()
            pending = _Pending(job, call, time.monotonic())
            self._pending.append(pending)
            job.state = "waiting"
            self._cond.notify_all()
            while not pending.done:
                if job.cancelled and not pending.taken:
                    self._pending.remove(pending)
                    job.state = "own"
                    raise Cancelled()
                self._cond.wait()
        if pending.error is not None:
            raise pending.error
        return pending.result

    # ----- passes -----------------------------------------------------------------------------------------

    def _loop(self) -> None:
        while True:
            with self._cond:
                group = self._next_group()
                if group is None:
                    return
            try:
                outcomes = self._run(group)
            except BaseException as err:  # a fault of the batcher itself: the group's requests get it, others go on
                outcomes = [(None, err)] * len(group)
            with self._cond:
                for pending, (result, error) in zip(group, outcomes):
                    pending.result, pending.error, pending.done = result, error, True
                    if pending.job.state == "pass":
                        pending.job.state = "own"
                self._cond.notify_all()

    def _next_group(self) -> Optional[list[_Pending]]:
        """Wait for a pass to start (lock held): the pending forwards of the oldest one's network."""
        while True:
            if self._closed:
                return None
            if self._pending:
                waited = time.monotonic() - self._pending[0].since
                busy = any(j.state == "own" for j in self._admitted)
                if not busy or waited >= self.gather_s:
                    break
                self._cond.wait(self.gather_s - waited)
            else:
                self._cond.wait()
        first = self._pending[0]
        key = first.call.key
        group = [first] if key is None else [p for p in self._pending if p.call.key is key or p.call.key == key]
        for pending in group:
            self._pending.remove(pending)
            pending.taken = True
            pending.job.state = "pass"
        return group

    def _run(self, group: list[_Pending]) -> list[tuple[Any, Optional[BaseException]]]:
        """The group's forwards as one pass on the compute thread; if it raises, each call alone, so that
        the error reaches only the request whose inputs cause it."""
        calls = [p.call for p in group]
        stats = self.stats
        stats.passes += 1
        stats.calls += len(calls)
        stats.shared += len(calls) > 1
        stats.most_calls = max(stats.most_calls, len(calls))
        try:
            if len(calls) == 1:
                return [(self.compute.call(_inference, calls[0].alone), None)]
            return [(r, None) for r in self.compute.call(_inference, type(calls[0]).together, calls)]
        except Exception as err:
            if len(calls) == 1:
                return [(None, err)]
        stats.retried += 1
        outcomes = []
        for call in calls:
            try:
                outcomes.append((self.compute.call(_inference, call.alone), None))
            except Exception as err:
                outcomes.append((None, err))
        return outcomes


def _inference(fn: Callable[..., T], *args: Any) -> T:
    """`fn(*args)` in inference mode (requests run in it; the compute thread has its own mode)."""
    with torch.inference_mode():
        return fn(*args)


__all__ = ["Batcher", "Job", "Cancelled", "Batchable", "TransformerCall", "BatchStats", "run_forward",
           "current_job", "default_max_batch", "DEFAULT_MAX_BATCH"]
