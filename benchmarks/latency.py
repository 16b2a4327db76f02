"""End-to-end latency of the default generation (both stages) and the time to the first streamed preview.

    .venv/bin/python benchmarks/latency.py                         # the shipped model on CPU
    .venv/bin/python benchmarks/latency.py --device cuda           # on a GPU
    .venv/bin/python benchmarks/latency.py --weights PATH          # a saved pipeline folder or Hub id
    .venv/bin/python benchmarks/latency.py --preset emoji          # shipped sizes, random weights

Measured after loading (load time and the first, cold request are reported on their own):
- end to end: `pipe(prompt, seed=i)` with the weights' default settings, text encoding, base stage,
  super-res stage and the final decode to a PIL image included; median of --runs (10).
- first preview: from calling `pipe.stream(prompt, previews=True, seed=i)` to holding the first
  `DecodeStep` with its decoded canvas, as the playground gets it; median of --runs. Each stream is
  consumed to the end, which also gives the full streamed time.
End-to-end and streamed runs alternate. The last line is `latency: X s, first preview: Y s`.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Optional

if __package__ in (None, ""):  # run as a file: the repository root, for `benchmarks` as a package
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks import bench_common as bc  # noqa: E402


def parse_args(argv: Optional[list[str]] = None) -> argparse.Namespace:
    p = bc.model_parser(__doc__, runs=10, warmup_help="untimed requests after the cold one")
    p.add_argument("--json", type=Path, help="default: benchmarks/results/latency_<device>.json")
    args = bc.parse_model_args(p, argv)
    if args.json is None:
        args.json = bc.RESULTS_DIR / f"latency_{args.device.split(':')[0]}.json"
    return args


def device_name(device: str) -> str:
    import torch

    if device.startswith("cuda"):
        return torch.cuda.get_device_name(torch.device(device))
    return bc.cpu_model()


def time_runs(pipe, args: argparse.Namespace) -> tuple[list[float], list[bc.StreamTiming]]:
    """Warm-up, then --runs end-to-end calls and streams, alternating (ABBA)."""
    for i in range(args.warmup):
        bc.time_stream(pipe, args.prompt, 1000 + i, args.device)
        bc.time_final(pipe, args.prompt, 1000 + i, args.device)
    e2e: list[float] = []
    streams: list[bc.StreamTiming] = []
    for i, kind in enumerate(bc.abba(args.runs, ("e2e", "stream"))):
        seed = i // 2  # both kinds of round r use seed r
        if kind == "e2e":
            e2e.append(bc.time_final(pipe, args.prompt, seed, args.device))
        else:
            streams.append(bc.time_stream(pipe, args.prompt, seed, args.device))
    return e2e, streams


def main(argv: Optional[list[str]] = None) -> tuple[float, float]:
    args = parse_args(argv)
    threads = bc.set_threads(args.threads)
    t0 = time.perf_counter()
    pipe = bc.load_pipeline(args.weights, args.preset, args.device, compile=args.compile)
    bc.sync(args.device)
    load_s = time.perf_counter() - t0
    cold_s = bc.time_final(pipe, args.prompt, 0, args.device)
    e2e, streams = time_runs(pipe, args)
    e, f, s = bc.summary(e2e), bc.summary([t.first_s for t in streams]), bc.summary([t.total_s for t in streams])
    steps = streams[-1].steps
    print(f"model: {bc.model_source(args)}; {device_name(args.device)} ({args.device}), {threads} threads; {steps} "
          f"steps over both stages; median of {args.runs} after a cold request and {args.warmup} warm-up")
    print(bc.timing_table("measure", {"end to end (pipe(prompt))": e, "first streamed preview": f,
                                      "whole stream, previews on": s}))
    print(f"load {load_s:.2f} s; first (cold) request {cold_s:.2f} s")
    if args.json:
        data = {**bc.results_header("latency", args, pipe, threads), "device_name": device_name(args.device),
                "steps": steps, "runs": args.runs, "warmup": args.warmup, "load_s": load_s, "cold_request_s": cold_s,
                "end_to_end_s": e, "first_preview_s": f, "stream_s": s, "target_first_preview_s": 0.3}
        print(f"results written to {bc.write_json(args.json, data)}", file=sys.stderr)
    print(f"latency: {e['median']:.3f} s, first preview: {f['median']:.3f} s")
    return e["median"], f["median"]


if __name__ == "__main__":
    main()
