"""Helpers shared by the benchmark scripts: statistics, tables, machine facts, timing the public pipeline.

Top-level imports are the standard library only: `vs_reference.py` runs part of itself inside the
reference's virtual environment, where neither muse nor its dependencies exist.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Iterable, Iterator, NamedTuple, Optional, Sequence

REPO_ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = Path(__file__).resolve().parent / "results"


def median(values: Sequence[float]) -> float:
    if not values:
        raise ValueError("median of no values")
    return float(statistics.median(values))


def summary(values: Sequence[float]) -> dict[str, Any]:
    """Median, min, max and the raw values (seconds)."""
    return {"median": median(values), "min": float(min(values)), "max": float(max(values)),
            "runs": [float(v) for v in values]}


def table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A plain-text table with right-aligned columns, as the scripts print it."""
    cells = [[str(c) for c in header]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    lines = ["  ".join(c.rjust(w) for c, w in zip(row, widths)) for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info() -> dict[str, Any]:
    """What the numbers were measured on (load average included: other work skews timings)."""
    info: dict[str, Any] = {"cpu": cpu_model(), "logical_cpus": os.cpu_count(), "machine": platform.machine(),
                            "system": f"{platform.system()} {platform.release()}", "python": platform.python_version()}
    try:
        info["load_average_1_5_15"] = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        pass
    return info


DEFAULT_PROMPT = "a smiling face with heart eyes"  # the shipped-model benchmarks' request


def model_parser(doc: str, runs: int, prompt: str = DEFAULT_PROMPT,
                 warmup_help: Optional[str] = None) -> argparse.ArgumentParser:
    """The options every shipped-model benchmark shares: which model, how many runs, threads, device, prompt."""
    p = argparse.ArgumentParser(description=doc.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--weights", help="pipeline folder or Hub repo id (default: the shipped weights/)")
    p.add_argument("--preset", help="instead of weights: this muse.presets preset's sizes with random weights "
                                    "(emoji: the shipped model's)")
    p.add_argument("--runs", type=int, default=runs)
    p.add_argument("--warmup", type=int, default=1, help=warmup_help)
    p.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's choice)")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ...")
    p.add_argument("--prompt", default=prompt)
    p.add_argument("--compile", action="store_true",
                   help="torch.compile the transformers (the cold request and warm-up then include compiling)")
    return p


def parse_model_args(p: argparse.ArgumentParser, argv: Optional[list[str]]) -> argparse.Namespace:
    args = p.parse_args(argv)
    if args.runs < 1 or args.warmup < 0:
        p.error("--runs must be >= 1 and --warmup >= 0")
    return args


def write_json(path: Path, data: dict[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n")
    return path


def set_threads(threads: Optional[int]) -> int:
    """Fix torch's intra-op threads (None keeps torch's default); returns the count in force."""
    import torch

    if threads is not None:
        if threads < 1:
            raise ValueError(f"threads must be >= 1, got {threads}")
        torch.set_num_threads(threads)
    return torch.get_num_threads()


# ----- timing the public pipeline (stream_overhead.py and latency.py) ---------------------------

def abba(runs: int, names: tuple[str, str]) -> Iterator[str]:
    """`runs` rounds of the two names in ABBA order (A B, B A, A B, ...), so a drift hits both equally."""
    for i in range(runs):
        yield from (names if i % 2 == 0 else names[::-1])


def load_pipeline(weights: Optional[str], preset: Optional[str], device: str, seed: int = 0,
                  compile: bool = False):
    """The shipped model (both None), a saved pipeline folder or repo id (`weights`), or a pipeline of a
    `muse.presets` preset with random weights (`preset`, e.g. "emoji": the shipped model's sizes, for
    timing before trained weights exist; speed does not depend on weight values).
    compile: through `MusePipeline.compile`."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import muse

    if weights is not None and preset is not None:
        raise ValueError("pass either --weights or --preset, not both")
    pipe = muse.load_pipeline(weights, device=device) if preset is None else _preset_pipeline(preset, device, seed)
    return pipe.compile() if compile else pipe


def _preset_pipeline(preset: str, device: str, seed: int):
    """`muse.presets.build_pipeline`, saved and loaded back: the same loading path (device, dtype) as
    shipped weights."""
    import muse
    from muse.presets import build_pipeline
    from muse.text import TextEncoder

    with tempfile.TemporaryDirectory() as folder:
        build_pipeline(preset, TextEncoder(), seed).save_pretrained(folder)
        return muse.load_pipeline(folder, device=device)


def model_source(args: argparse.Namespace) -> str:
    """What a `model_parser` command line timed, in words."""
    return args.weights or (f"preset {args.preset} (random weights)" if args.preset else "shipped weights/")


def describe_pipeline(pipe) -> dict[str, Any]:
    """Component sizes, so a results file says which model it timed."""
    out: dict[str, Any] = {"defaults": dict(pipe.config.defaults)}
    for name in ("base_model", "base_critic", "superres_model", "superres_critic"):
        model = getattr(pipe, name, None)
        if model is not None:
            c = model.config
            out[name] = {"dim": c.dim, "depth": c.depth, "heads": c.heads, "dim_head": c.dim_head,
                         "seq_len": c.seq_len, "num_tokens": c.num_tokens,
                         "parameters": sum(p.numel() for p in model.parameters()),
                         "dtype": str(next(model.parameters()).dtype).replace("torch.", "")}
    from muse.compiled import is_compiled

    out["compiled"] = is_compiled(pipe.base_model)
    out["vq_parameters"] = sum(p.numel() for p in pipe.vq.parameters())
    preview = getattr(pipe, "preview_decoder", None)
    out["preview_decoder_parameters"] = sum(p.numel() for p in preview.parameters()) if preview is not None else None
    return out


def results_header(benchmark: str, args: argparse.Namespace, pipe, threads: int) -> dict[str, Any]:
    """The fields every shipped-model benchmark's JSON starts with: what ran, where, on which model."""
    return {"benchmark": benchmark, "command": command_line(), "time": time.strftime("%Y-%m-%d %H:%M:%S"),
            "machine": machine_info(), "versions": versions(), "model": model_source(args),
            "pipeline": describe_pipeline(pipe), "device": args.device, "threads": threads, "prompt": args.prompt}


def sync(device: str) -> None:
    """Wait for queued GPU work so wall-clock timings are complete."""
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()


def versions() -> dict[str, str]:
    import torch

    out = {"torch": torch.__version__}
    try:
        import muse

        out["muse"] = getattr(muse, "__version__", "?")
    except ImportError:
        pass
    return out


def time_final(pipe, prompt: str, seed: int, device: str) -> float:
    """Seconds for one plain generation (final image only, both stages)."""
    t0 = time.perf_counter()
    images = pipe(prompt, seed=seed)
    sync(device)
    assert images
    return time.perf_counter() - t0


class StreamTiming(NamedTuple):
    first_s: float  # to the first step with its decoded preview
    total_s: float  # to the end of the stream
    steps: int


def time_stream(pipe, prompt: str, seed: int, device: str) -> StreamTiming:
    """One `pipe.stream(prompt, previews=True)` consumed to the end, as the playground consumes it."""
    t0 = time.perf_counter()
    first = None
    steps = 0
    for step in pipe.stream(prompt, previews=True, seed=seed):
        assert step.canvas is not None  # every step carries its decoded images
        if first is None:
            sync(device)
            first = time.perf_counter() - t0
        steps += 1
    sync(device)
    return StreamTiming(first, time.perf_counter() - t0, steps)


def timing_table(label: str, rows: dict[str, dict[str, Any]]) -> str:
    """A table of `summary` dicts: one row each, median, min and max in seconds."""
    return table([label, "median s", "min s", "max s"],
                 [[name, *(f"{s[k]:.3f}" for k in ("median", "min", "max"))] for name, s in rows.items()])


def command_line() -> str:
    return " ".join([Path(sys.executable).name, *sys.argv])
