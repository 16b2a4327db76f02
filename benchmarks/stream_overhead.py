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
from pathlib import Path
from typing import Optional

if __package__ in (None, ""):  # run as a file: the repository root, for `benchmarks` as a package
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks import bench_common as bc  # noqa: E402


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


def time_runs(pipe, args: argparse.Namespace) -> tuple[list[bc.StreamTiming], list[float]]:
    """Warm-up, then --runs preview streams and final-only calls of the same request, alternating (ABBA)."""
    for _ in range(args.warmup):
        bc.time_stream(pipe, args.prompt, args.seed, args.device)
        bc.time_final(pipe, args.prompt, args.seed, args.device)
    preview: list[bc.StreamTiming] = []
    final: list[float] = []
    for kind in bc.abba(args.runs, ("preview", "final")):
        if kind == "preview":
            preview.append(bc.time_stream(pipe, args.prompt, args.seed, args.device))
        else:
            final.append(bc.time_final(pipe, args.prompt, args.seed, args.device))
    return preview, final


def main(argv: Optional[list[str]] = None) -> float:
    args = parse_args(argv)
    threads = bc.set_threads(args.threads)
    pipe = bc.load_pipeline(args.weights, args.preset, args.device, compile=args.compile)
    if args.exact_previews:
        pipe.fast_previews = False
    decoder = "tokenizer decoder" if pipe.preview_decoder is None or not pipe.fast_previews else "preview decoder"
    preview, final = time_runs(pipe, args)
    p, f = bc.summary([t.total_s for t in preview]), bc.summary(final)
    steps = preview[-1].steps
    ratio = p["median"] / f["median"]
    per_step = (p["median"] - f["median"]) / max(steps - 1, 1)
    print(f"model: {bc.model_source(args)}; device {args.device}, {threads} threads; {steps} steps; previews by "
          f"the {decoder}; median of {args.runs} after {args.warmup} warm-up")
    print(bc.timing_table("run", {"preview every step": p, "final image only": f}))
    print(f"extra per previewed step: {per_step * 1e3:.1f} ms")
    if args.json:
        data = {**bc.results_header("stream_overhead", args, pipe, threads), "seed": args.seed, "steps": steps,
                "runs": args.runs, "warmup": args.warmup, "previews_decoded_by": decoder, "preview_s": p,
                "final_s": f, "extra_per_step_s": per_step, "ratio": ratio, "target": 1.15}
        print(f"results written to {bc.write_json(args.json, data)}", file=sys.stderr)
    print(f"ratio preview/final: {ratio:.3f}")
    return ratio


if __name__ == "__main__":
    main()
