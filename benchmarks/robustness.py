"""Robustness of the playground as a public server, measured through gradio_client against
`python app.py` on 127.0.0.1: fuzzed requests, concurrent streaming clients, cancellation, memory.

    .venv/bin/python benchmarks/robustness.py                    # the shipped model -> results/robustness.json
    .venv/bin/python benchmarks/robustness.py --fuzz 500 --clients 8 --weights path/or/repo

The drivers are `tests.harness.robustness`, which tests/test_robustness.py runs on a tiny random model
and asserts on; this script runs them on a model of your choice and reports (outcomes of a fuzzed
request: see that module).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any, Optional

if __package__ in (None, ""):  # run as a file: the repository root, for `benchmarks` and `tests` as packages
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.bench_common import RESULTS_DIR, command_line, machine_info, versions, write_json  # noqa: E402
from tests.harness import running_app  # noqa: E402
from tests.harness.robustness import (fuzz_cases, make_files, run_cancel, run_fuzz, run_load,  # noqa: E402
                                      run_soak)

PARTS = ("fuzz", "load", "cancel", "soak", "queue")


def parse_args(argv: Optional[list[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--weights", help="model folder or Hub repo id (default: the shipped weights/)")
    p.add_argument("--fuzz", type=int, default=400, help="fuzzed requests")
    p.add_argument("--clients", type=int, default=8)
    p.add_argument("--timesteps", type=int, default=12, help="steps per stage of each load-test request")
    p.add_argument("--small-queue", type=int, default=4, help="second load run with this queue size")
    p.add_argument("--soak", type=int, default=200, help="mixed requests of the memory soak")
    p.add_argument("--soak-clients", type=int, default=4, help="users at once in the memory soak")
    p.add_argument("--out", type=Path, default=RESULTS_DIR / "robustness.json")
    p.add_argument("--only", choices=PARTS, action="append",
                   help="run only these parts (repeatable); the others keep their figures from --out")
    return p.parse_args(argv)


def run_parts(a: argparse.Namespace, parts: set[str], report: dict[str, Any], tmp: Path) -> None:
    """Run the asked parts against live servers, writing `report` to --out as each part ends (a run cut
    short keeps its figures)."""
    if parts & {"fuzz", "load", "cancel", "soak"}:
        with running_app(a.weights, tmp / "app.log") as live:
            if "fuzz" in parts:
                report["fuzz"] = run_fuzz(live.url, fuzz_cases(a.fuzz, make_files(tmp / "files")), live.log_path)
                write_json(a.out, report)
            if "load" in parts:
                report["load"] = run_load(live.url, live.pid, a.clients, a.timesteps)
                write_json(a.out, report)
            if "cancel" in parts:
                report["cancel"] = run_cancel(live.url, live.log_path)
                write_json(a.out, report)
            if "soak" in parts:
                report["soak"] = run_soak(live.url, live.pid, make_files(tmp / "files"), a.soak, a.soak_clients)
                write_json(a.out, report)
            report["server_tracebacks"] = live.log_path.read_text(errors="replace").count("Traceback")
    if "queue" in parts:
        with running_app(a.weights, tmp / "app-small-queue.log", env={"MUSE_QUEUE_SIZE": str(a.small_queue)}) as live:
            report["load_small_queue"] = {**run_load(live.url, live.pid, a.clients, a.timesteps),
                                          "queue_size": a.small_queue}
    write_json(a.out, report)


def passed(report: dict[str, Any]) -> bool:
    """The targets of the parts in `report`: no fuzz failure; every load client served its own images,
    memory back within 10 %; the soak without a failure, its memory at the end within 5 % of the warm-up's."""
    fuzz, load, soak = report.get("fuzz"), report.get("load"), report.get("soak")
    fuzz_ok = fuzz is None or fuzz["failure"] == 0
    load_ok = load is None or (load["completed"] == load["clients"] and load["all_own_images"]
                               and load["rss_after_over_before"] <= 1.10)
    soak_ok = soak is None or (not soak["failures"] and soak["end_over_warm"] <= 1.05)
    return fuzz_ok and load_ok and soak_ok


def main(argv: Optional[list[str]] = None) -> int:
    a = parse_args(argv)
    parts = set(a.only or PARTS)
    report: dict[str, Any] = json.loads(a.out.read_text()) if a.only and a.out.is_file() else {}
    report.update({"command": command_line(), "machine": machine_info(), "versions": versions(),
                   "weights": a.weights or "weights/ (shipped)"})
    with tempfile.TemporaryDirectory() as tmp:
        run_parts(a, parts, report, Path(tmp))
    print(summary(report))
    print(f"wrote {a.out}")
    return 0 if passed(report) else 1


def summary(report: dict[str, Any]) -> str:
    """One line per part, as the script prints them."""
    lines = []
    if "fuzz" in report:
        f = report["fuzz"]
        lines.append(f"fuzz: {f['requests']} requests ({f['sent_as_raw_json_with_nan_or_infinity']} as raw JSON with "
                     f"NaN/Infinity), {f['ok']} ok, {f['clear']} clear errors, {f['refused_by_gradio']} malformed "
                     f"file data refused by Gradio, {f['failure']} failures; server tracebacks "
                     f"{f['server_tracebacks']} (and Gradio's own for the refused: {f['payloads_refused_by_gradio']})")
    if "load" in report:
        load = report["load"]
        lines.append(f"load: {load['completed']}/{load['clients']} clients completed, own images "
                     f"{load['all_own_images']}, memory {load['rss_mb_before']:.0f} -> peak {load['rss_mb_peak']:.0f} "
                     f"-> {load['rss_mb_after']:.0f} MiB ({(load['rss_after_over_before'] - 1) * 100:+.1f} %)")
    if "cancel" in report:
        c = report["cancel"]
        lines.append(f"cancel: decoding stopped {c['median_stop_after_cancel_s']:.3f} s after cancel was sent "
                     f"(median; max {c['max_stop_after_cancel_s']:.3f} s = {c['max_stop_after_cancel_steps']:.2f} "
                     f"steps of {c['median_server_step_s']:.3f} s), the cancel request itself taking "
                     f"{c['median_cancel_call_s']:.3f} s; after the server took it, at most "
                     f"{c['max_stop_after_ack_steps']:.2f} steps; next user's first step after "
                     f"{c['median_next_request_first_update_s']:.3f} s")
    if "soak" in report:
        k = report["soak"]
        lines.append(f"soak: {k['requests']} mixed requests, {k['clients']} users at once, outcomes {k['outcomes']}; "
                     f"memory {k['rss_mb_start']:.0f} -> {k['rss_mb_warm']:.0f} after {k['warm_after_requests']} "
                     f"-> {k['rss_mb_end']:.0f} MiB at the end ({(k['end_over_warm'] - 1) * 100:+.1f} %), peak "
                     f"{k['rss_mb_peak']:.0f}, {k['mb_per_100_requests_after_warmup']:+.1f} MiB per 100 requests "
                     f"after the warm-up")
    if "load_small_queue" in report:
        q = report["load_small_queue"]
        lines.append(f"queue of {q['queue_size']}: {q['completed']} completed, {q['queue_full']} told the queue is "
                     f"full, {len(q['failures'])} failures")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
