"""muse.compute: the one thread a server runs torch on, and its thread count."""

from __future__ import annotations

import os
import threading

import pytest
import torch

from muse.compute import ComputeThread, server_threads


def test_calls_run_in_order_on_one_thread_whoever_asks():
    compute = ComputeThread("test-compute")
    seen, order = [], []

    def work(i):
        seen.append(threading.get_ident())
        order.append(i)
        return i * i

    callers = [threading.Thread(target=lambda i=i: compute.call(work, i)) for i in range(6)]
    for t in callers:
        t.start()
    for t in callers:
        t.join(30)
    assert len(set(seen)) == 1 and seen[0] != threading.get_ident() and sorted(order) == list(range(6))
    assert compute.call(work, 3) == 9 and compute.on_thread() is False
    assert compute.call(compute.on_thread) is True
    # a call made on the thread itself runs at once (a queued one would wait for itself forever)
    assert compute.call(lambda: compute.call(lambda: compute.submit(work, 4).result(1))) == 16


def test_an_exception_reaches_the_caller_and_the_thread_goes_on():
    compute = ComputeThread("test-compute")

    def fail():
        raise ValueError("bad input")

    with pytest.raises(ValueError, match="bad input"):
        compute.call(fail)
    assert compute.call(lambda: 1 + 1) == 2


def test_iterate_advances_a_generator_there_and_closes_it_there():
    compute = ComputeThread("test-compute")
    where, closed = [], []

    def steps():
        try:
            for i in range(5):
                where.append(threading.get_ident())
                yield i
        finally:
            closed.append(threading.get_ident())  # a cancelled request's cleanup

    assert list(compute.iterate(steps())) == list(range(5))
    assert closed == [where[0]] and set(where) == {where[0]} != {threading.get_ident()}
    # stopped early (a cancel): the generator is closed on the compute thread, at once
    closed.clear()
    items = compute.iterate(steps())
    assert next(items) == 0
    items.close()
    assert closed == [where[0]]
    # an error inside the generator reaches the caller
    def broken():
        yield 1
        raise RuntimeError("step failed")

    with pytest.raises(RuntimeError, match="step failed"):
        list(compute.iterate(broken()))


def test_torch_threads_are_set_for_the_compute_thread():
    compute = ComputeThread("test-compute")
    before = torch.get_num_threads()
    try:
        compute.set_threads(1)
        assert compute.call(torch.get_num_threads) == 1
    finally:
        compute.set_threads(before)


def test_server_threads_leave_a_core_and_read_muse_threads():
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    assert server_threads({}) == max(1, cores - 1)
    assert server_threads({"MUSE_THREADS": " 3 "}) == 3
    for bad in ("0", "-1", "two", "1.5"):
        with pytest.raises(ValueError, match="MUSE_THREADS must be a whole number of threads, 1 or more"):
            server_threads({"MUSE_THREADS": bad})
