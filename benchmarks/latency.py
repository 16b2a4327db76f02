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

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_common as bc  # noqa: E402


def time_stream(pipe, prompt: str, seed: int, device: str) -> tuple[float, float, int]:
    """(seconds to the first decoded preview, seconds to the end of the stream, steps)."""
    t0 = time.perf_counter()
    first = None
    steps = 0
    for step in pipe.stream(prompt, previews=True, seed=seed):
        if first is None:
            assert step.canvas is not None
            bc.sync(device)
            first = time.perf_counter() - t0
        steps += 1
    bc.sync(device)
    return first, time.perf_counter() - t0, steps


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


def main(argv: Optional[list[str]] = None) -> tuple[float, float]:
    args = parse_args(argv)
    threads = bc.set_threads(args.threads)
    t0 = time.perf_counter()
    pipe = bc.load_pipeline(args.weights, args.preset, args.device, compile=args.compile)
    bc.sync(args.device)
    load_s = time.perf_counter() - t0
    cold_s = bc.time_final(pipe, args.prompt, 0, args.device)
    for i in range(args.warmup):
        time_stream(pipe, args.prompt, 1000 + i, args.device)
        bc.time_final(pipe, args.prompt, 1000 + i, args.device)
    e2e, first, streamed = [], [], []
    steps = 0
    for i in range(args.runs):
        order = ("e2e", "stream") if i % 2 == 0 else ("stream", "e2e")
        for kind in order:
            if kind == "e2e":
                e2e.append(bc.time_final(pipe, args.prompt, i, args.device))
            else:
                f, s, steps = time_stream(pipe, args.prompt, i, args.device)
                first.append(f)
                streamed.append(s)
    e, f, s = bc.summary(e2e), bc.summary(first), bc.summary(streamed)
    source = args.weights or (f"preset {args.preset} (random weights)" if args.preset else "shipped weights/")
    print(f"model: {source}; {device_name(args.device)} ({args.device}), {threads} threads; {steps} steps over "
          f"both stages; median of {args.runs} after a cold request and {args.warmup} warm-up")
    print(bc.table(["measure", "median s", "min s", "max s"],
                   [["end to end (pipe(prompt))", f"{e['median']:.3f}", f"{e['min']:.3f}", f"{e['max']:.3f}"],
                    ["first streamed preview", f"{f['median']:.3f}", f"{f['min']:.3f}", f"{f['max']:.3f}"],
                    ["whole stream, previews on", f"{s['median']:.3f}", f"{s['min']:.3f}", f"{s['max']:.3f}"]]))
    print(f"load {load_s:.2f} s; first (cold) request {cold_s:.2f} s")
    if args.json:
        data = {"benchmark": "latency", "command": bc.command_line(), "time": time.strftime("%Y-%m-%d %H:%M:%S"),
                "machine": bc.machine_info(), "versions": bc.versions(), "model": source,
                "pipeline": bc.describe_pipeline(pipe), "device": args.device,
                "device_name": device_name(args.device), "threads": threads, "prompt": args.prompt,
                "steps": steps, "runs": args.runs, "warmup": args.warmup, "load_s": load_s, "cold_request_s": cold_s,
                "end_to_end_s": e, "first_preview_s": f, "stream_s": s, "target_first_preview_s": 0.3}
        print(f"results written to {bc.write_json(args.json, data)}", file=sys.stderr)
    print(f"latency: {e['median']:.3f} s, first preview: {f['median']:.3f} s")
    return e["median"], f["median"]


if __name__ == "__main__":
    main()
