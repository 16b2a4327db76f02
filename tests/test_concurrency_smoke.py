"""benchmarks/concurrency.py runs end to end at tiny sizes. No speed is asserted: the figures live in
benchmarks/README.md; here the batched requests must equal the one-at-a-time ones and the last line must
read as documented."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
import torch

from benchmarks import concurrency
from tests.harness.chromium import chromium_or_skip

LAST_LINE = r"concurrency: 2 clients, images/s batched/one-at-a-time \d+\.\d\d, slowest/lone \d+\.\d\d"


def run(tmp_path, capsys, *args: str) -> dict[str, Any]:
    """The benchmark on the tiny random model with 1 and 2 clients: its JSON, once its last line reads as
    documented (torch's thread count restored after: the library path sets it in this process)."""
    out = tmp_path / "concurrency.json"
    before = torch.get_num_threads()
    try:
        ratio, slowest = concurrency.main([*args, "--preset", "tiny", "--clients", "1", "2", "--warmup", "0",
                                           "--json", str(out)])
    finally:
        torch.set_num_threads(before)
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert re.fullmatch(LAST_LINE, last), last
    assert ratio > 0 and slowest > 0
    data = json.loads(out.read_text())
    assert [row["clients"] for row in data["rows"]] == [1, 2]
    return data


def test_the_concurrency_benchmark_runs_and_reports_its_last_line(tmp_path, capsys):
    data = run(tmp_path, capsys, "--threads", "1")
    assert data["exact_requests"] == data["requests"] == 3 and data["token_agreement"] == 1.0
    assert all(row["one_request_of_n_s"] > 0 for row in data["rows"])  # the bound of batching, measured


@pytest.mark.slow
def test_the_gradio_path_runs_two_playgrounds_and_reports_its_last_line(tmp_path, capsys):
    """--through gradio: gradio_client clients of a batched playground and of one with MUSE_MAX_BATCH=1 (tiny
    random weights); the images of the two are the same."""
    data = run(tmp_path, capsys, "--through", "gradio")
    assert data["exact_requests"] == data["requests"] == 3


@pytest.mark.slow
@pytest.mark.browser
def test_the_chromium_path_drives_pages_of_two_playgrounds(tmp_path, capsys):
    """--through chromium: pages of headless Chromium on a batched playground and on one with MUSE_MAX_BATCH=1
    (tiny random weights); every page shows only its own run, and its PNG is the library's image."""
    data = run(tmp_path, capsys, "--through", "chromium", "--chromium", chromium_or_skip(), "--threads", "1")
    assert data["exact_requests"] == data["requests"] == 6 and data["page_errors"] == []
