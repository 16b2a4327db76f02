"""Helpers shared by the benchmark scripts: statistics, tables, machine facts, test pipelines.

Top-level imports are the standard library only: `vs_reference.py` runs part of itself inside the
reference's virtual environment, where neither muse nor its dependencies exist.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator, Optional, Sequence

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
    p.add_argument("--preset", help="instead of weights: this training preset's sizes with random weights")
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


# ----- pipelines for stream_overhead.py and latency.py ------------------------------------------

def load_pipeline(weights: Optional[str], preset: Optional[str], device: str, seed: int = 0,
                  compile: bool = False):
    """The shipped model (both None), a saved pipeline folder or repo id (`weights`), or a pipeline of
    the named training preset's architecture with random weights (`preset`, e.g. "emoji": the shipped
    model's sizes, for timing before the trained weights exist; speed does not depend on weight values).
    compile: through `MusePipeline.compile`."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import muse

    if weights is not None and preset is not None:
        raise ValueError("pass either --weights or --preset, not both")
    if preset is None:
        pipe = muse.load_pipeline(weights, device=device)
        return pipe.compile() if compile else pipe
    import torch

    from muse.pipeline import MusePipeline, PipelineConfig
    from muse.text import TextEncoder
    from muse.train.stages import make_preset
    from muse.transformer import MaskedTransformer
    from muse.vq import VQModel

    text_encoder = TextEncoder()
    p = make_preset(preset, text_dim=text_encoder.dim)
    torch.manual_seed(seed)
    pipe = MusePipeline(VQModel(p.vq), MaskedTransformer(p.base), text_encoder, MaskedTransformer(p.superres),
                        MaskedTransformer(p.base_critic), MaskedTransformer(p.superres_critic), PipelineConfig())
    # Saved and loaded back, so the model goes through the same loading path (device, dtype) as shipped weights.
    with tempfile.TemporaryDirectory() as folder:
        pipe.save_pretrained(folder)
        pipe = muse.load_pipeline(folder, device=device)
    return pipe.compile() if compile else pipe


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


def command_line() -> str:
    return " ".join([Path(sys.executable).name, *sys.argv])


# ----- the playground as a live server (tests and benchmarks/robustness.py) --------------------

@dataclass
class LiveApp:
    url: str
    pid: int
    log_path: Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def running_app(weights: Optional[Path], log_path: Path, timeout: float = 180.0,
                env: Optional[dict[str, str]] = None) -> Iterator[LiveApp]:
    """Start `python app.py` on a free 127.0.0.1 port (MUSE_WEIGHTS=weights; None = the shipped model),
    wait until it answers, yield it, and stop it."""
    port = free_port()
    full_env = {**os.environ, "GRADIO_SERVER_NAME": "127.0.0.1", "GRADIO_SERVER_PORT": str(port),
                "GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1", **(env or {})}
    if weights is not None:
        full_env["MUSE_WEIGHTS"] = str(weights)
    url = f"http://127.0.0.1:{port}/"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([sys.executable, "app.py"], cwd=REPO_ROOT, env=full_env, stdout=log,
                                stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + timeout
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(f"app.py exited with {proc.returncode}:\n{log_path.read_text()[-3000:]}")
                try:
                    with urllib.request.urlopen(url, timeout=2) as response:
                        if response.status == 200:
                            break
                except OSError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"app.py did not answer on {url}:\n{log_path.read_text()[-3000:]}")
                time.sleep(0.5)
            yield LiveApp(url=url, pid=proc.pid, log_path=log_path)
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def rss_mb(pid: int) -> float:
    """Resident memory of a process in MiB (Linux /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")
