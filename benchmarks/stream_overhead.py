"""What streaming costs: the same generation with a decoded preview at every step vs the final image only.

    .venv/bin/python benchmarks/stream_overhead.py                   # the shipped model (weights/)
    .venv/bin/python benchmarks/stream_overhead.py --weights PATH     # a saved pipeline folder or Hub id
    .venv/bin/python benchmarks/stream_overhead.py --preset emoji     # shipped sizes, random weights

"preview": `pipe.stream(prompt, previews=True, ...)` consumed to the end: at every step of both stages
the token grid is decoded once into the canvas (still-masked tokens greyed) and the prediction, as the
playground shows them. "final": `pipe(prompt, ...)`, which decodes the last step only. Same prompt,
seed and settings (the weights' defaults: both stages, critics as configured). The two alternate
(ABBA) after warm-up; the last line is `ratio preview/final: X` (medians).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Optional

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_common as bc  # noqa: E402


def time_preview(pipe, prompt: str, seed: int, device: str) -> tuple[float, int]:
    """Seconds for a fully consumed preview stream, and the number of steps it yielded."""
    t0 = time.perf_counter()
    steps = 0
    for step in pipe.stream(prompt, previews=True, seed=seed):
        steps += 1
        assert step.canvas is not None  # every step carries its decoded images
    bc.sync(device)
    return time.perf_counter() - t0, steps


def parse_args(argv: Optional[list[str]] = None) -> argparse.Namespace:
    p = bc.model_parser(__doc__, runs=5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--exact-previews", action="store_true",
                   help="decode every preview with the full tokenizer decoder, not the preview decoder")
    p.add_argument("--json", type=Path, help="default: results/stream_overhead.json "
                                              "(stream_overhead_exact.json with --exact-previews)")
    args = bc.parse_model_args(p, argv)
    if args.json is None:
        args.json = bc.RESULTS_DIR / ("stream_overhead_exact.json" if args.exact_previews else "stream_overhead.json")
    return args


def main(argv: Optional[list[str]] = None) -> float:
    args = parse_args(argv)
    threads = bc.set_threads(args.threads)
    pipe = bc.load_pipeline(args.weights, args.preset, args.device, compile=args.compile)
    if args.exact_previews:
        pipe.fast_previews = False
    decoder = "tokenizer decoder" if pipe.preview_decoder is None or not pipe.fast_previews else "preview decoder"
    for _ in range(args.warmup):
        time_preview(pipe, args.prompt, args.seed, args.device)
        bc.time_final(pipe, args.prompt, args.seed, args.device)
    preview, final = [], []
    steps = 0
    for i in range(args.runs):
        for kind in (("preview", "final") if i % 2 == 0 else ("final", "preview")):  # ABBA
            if kind == "preview":
                seconds, steps = time_preview(pipe, args.prompt, args.seed, args.device)
                preview.append(seconds)
            else:
                final.append(bc.time_final(pipe, args.prompt, args.seed, args.device))
    p, f = bc.summary(preview), bc.summary(final)
    ratio = p["median"] / f["median"]
    per_step = (p["median"] - f["median"]) / max(steps - 1, 1)
    source = args.weights or (f"preset {args.preset} (random weights)" if args.preset else "shipped weights/")
    print(f"model: {source}; device {args.device}, {threads} threads; {steps} steps; previews by the {decoder}; "
          f"median of {args.runs} after {args.warmup} warm-up")
    print(bc.table(["run", "median s", "min s", "max s"],
                   [["preview every step", f"{p['median']:.3f}", f"{p['min']:.3f}", f"{p['max']:.3f}"],
                    ["final image only", f"{f['median']:.3f}", f"{f['min']:.3f}", f"{f['max']:.3f}"]]))
    print(f"extra per previewed step: {per_step * 1e3:.1f} ms")
    if args.json:
        data = {"benchmark": "stream_overhead", "command": bc.command_line(), "time": time.strftime("%Y-%m-%d %H:%M:%S"),
                "machine": bc.machine_info(), "versions": bc.versions(), "model": source,
                "pipeline": bc.describe_pipeline(pipe), "device": args.device, "threads": threads,
                "prompt": args.prompt, "seed": args.seed, "steps": steps, "runs": args.runs, "warmup": args.warmup,
                "previews_decoded_by": decoder, "preview_s": p, "final_s": f, "extra_per_step_s": per_step, "ratio": ratio, "target": 1.15}
        print(f"results written to {bc.write_json(args.json, data)}", file=sys.stderr)
    print(f"ratio preview/final: {ratio:.3f}")
    return ratio


if __name__ == "__main__":
    main()
