"""benchmarks/browser_latency.py end to end on the tiny random model: the page driven in headless Chromium,
two prompts and two clients at once. No timing is asserted: speed lives in benchmarks/."""

from __future__ import annotations

import json

import pytest

from tests.harness.chromium import chromium_or_skip

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def test_browser_latency_measures_the_page_and_the_library(tiny_weights, tmp_path, capsys):
    from benchmarks import browser_latency

    out = tmp_path / "browser_latency.json"
    ratio = browser_latency.main(["--weights", str(tiny_weights), "--prompts", "red heart", "cat face",
                                  "--warmup", "0", "--clients", "2", "--chromium", chromium_or_skip(),
                                  # one torch thread on both sides: float sums in the same order, so the same
                                  # tokens (an earlier test may have left this process at another count)
                                  "--threads", "1",
                                  "--timeout", "240", "--out", str(out)])
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last == f"ratio browser/library: {ratio:.2f}" and ratio > 0
    data = json.loads(out.read_text())
    assert data["page_errors"] == [] and data["app_threads"] == 1
    launch = data["launch"]
    assert launch["server_up_s"] <= launch["page_loaded_s"] <= launch["first_done_s"]
    assert launch["server_up_s"] <= launch["model_ready_s"] <= launch["first_click_s"]  # clicked once ready
    steps = 8  # the tiny model's 4 steps in each of two stages
    for r in data["requests"]:
        assert r["steps"] == steps and 1 <= r["frames"] <= r["pictures_set"] <= steps
        assert r["coalesced"] == steps - r["frames"]
        # the steps the server said it coalesced (its pace, MUSE_STREAM_FPS) were never drawn
        assert 0 <= r["coalesced_reported"] <= r["coalesced"]
        assert r["coalesced_reported"] == (0 if r["streamed"] is None else steps - r["streamed"])
        assert 0 < r["first_preview_s"] <= r["done_s"] <= r["ready_s"]
        assert r["status_lines"][-1][1].startswith("done") and r["step_labels"] >= 2
        assert all(f"seed {r['seed']}" in line for _, line in r["status_lines"])
        assert r["same_image_as_library"] is True  # the page's PNG is the library's image for that request
        assert r["gif_bytes"] > 0 and len(r["canvas_bytes"]) == r["frames"] and min(r["canvas_bytes"]) > 0
        assert r["library_s"] > 0 and r["library_stream_s"] > 0 and r["library_cpu_s"] > 0
        assert r["server_cpu_s"] > 0 and r["browser_cpu_s"] > 0
    assert data["medians"]["ready_s"] / data["medians"]["library_s"] == pytest.approx(ratio)
    clients = data["clients"]
    assert clients["clients"] == 2 and clients["all_own_runs_only"] is True
    assert len({c["seed"] for c in clients["per_client"]}) == 2
