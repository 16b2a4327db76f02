"""Side-by-side: muse's sampler against muse-maskgit-pytorch 0.3.5's `MaskGit.generate`, same work.

    .venv/bin/python benchmarks/vs_reference.py            # CPU, 2 threads, batch 1 and 4, critic off/on
    .venv/bin/python benchmarks/vs_reference.py --runs 9 --threads 2 --json benchmarks/results/vs_reference.json

What is compared: text-to-image token generation on a 16x16 grid (256 tokens), 12 steps,
classifier-free guidance at cond_scale 3, with and without a token critic, batch 1 and 4, random
weights, identical sizes on both sides (dim, depth, heads, dim_head, feed-forward width, vocabulary,
text-context length and width). Both produce token ids only; neither decodes them to pixels.

- Reference: `muse_maskgit_pytorch.MaskGit(...).generate(texts=..., fmap_size=16, timesteps=12,
  cond_scale=3)`, run in its own virtual environment (`.bench/ref-venv`, created on first use) with
  the same torch version as ours. Its transformer, critic, attention and sampling loop run unchanged.
  Three things around them are replaced, all outside the timed network and sampler code:
    * text encoder: `transformer.encode_text` returns a fixed precomputed (B, L, 384) tensor (it would
      download T5); the width comes from a T5Config(d_model=384) put in its config cache, so building
      the transformer downloads nothing.
    * image decoder: `MaskGit.__init__` requires a `VQGanVAE` and 0.3.5's `generate` always decodes
      through it, so a tiny VQGanVAE is built and its `decode_from_ids` is replaced by the identity:
      `generate` returns the token ids, as ours does.
    * torchvision: the package imports `torchvision` at import time (PIL transforms, datasets, VGG for
      training losses) but `generate` never calls it. Where no usable torchvision is installed (PyPI's
      torchvision does not load beside this machine's CPU torch), the reference process alone gets a
      stub `torchvision` module whose every function raises; a run that touched it would fail.
  tqdm's progress bar is switched off (TQDM_DISABLE=1), which only makes the reference faster.
- Ours: the public call, `pipe(prompts, output_type="ids", superres=False, use_critic=...,
  timesteps=12, cond_scale=3, ...)`, of a `MusePipeline` holding a generator and a critic of those
  sizes: request validation, text encoding, the stage runner's contexts and decoding loop, as a user's
  call runs them. Its text encoder answers with the same precomputed embeddings as the reference's
  (no MiniLM forward, as the reference runs no T5); its tokenizer (the tiny preset's, with this
  vocabulary) is never run, since ids are the output. `--dtype auto` (default) runs our transformers
  in the dtype muse picks for inference on this CPU (`muse.transformer.inference_dtype`, as
  `load_pipeline` does); `--dtype float32` compares at the reference's exact precision. The dtype
  used is printed and saved.

The two sides run in separate processes, one request at a time, alternating (ABBA order), after
warm-up runs; the table gives medians and the last line is `ratio ours/reference: X`, X being the
worst configuration's median ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

if __package__ in (None, ""):  # run as a file (both workers too): the repository root, for `benchmarks` as a package
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks import bench_common as bc  # noqa: E402

if TYPE_CHECKING:  # annotations only: the reference worker imports this file without muse
    import torch

    from muse.pipeline import MusePipeline

REFERENCE = "muse-maskgit-pytorch==0.3.5"
# The reference's runtime dependencies (its METADATA), torchvision excluded: see the module docstring.
# Pinned to versions checked to work with torch 2.13 on Python 3.11, so the environment is reproducible.
REFERENCE_DEPS = ["accelerate==1.15.0", "beartype==0.23.1", "einops==0.8.2", "ema-pytorch==0.8.3",
                  "memory-efficient-attention-pytorch==0.1.6", "pillow", "sentencepiece==0.2.3",
                  "transformers==5.24.0", "tqdm==4.70.1", "vector-quantize-pytorch==1.32.0"]
DEFAULT_VENV = bc.REPO_ROOT / ".bench" / "ref-venv"
MARKER = "muse-bench-env.json"
PROMPT = "a benchmark prompt"  # both sides' text: each side's encoder answers it with the shared embeddings


# ----- the work both sides do -------------------------------------------------------------------

def default_settings() -> dict[str, Any]:
    return dict(num_tokens=512, grid=16, dim=256, depth=4, heads=4, dim_head=64, ff_mult=4, text_dim=384,
                text_len=16, text_tokens=12, timesteps=12, cond_scale=3.0, temperature=1.0,
                topk_filter_thres=0.9, critic_noise_scale=1.0, seed=0)


def text_embeddings(batch: int, s: dict[str, Any]):
    """The fixed "encoded prompt" both sides use: (B, text_len, text_dim), padding rows zero.

    Drawn from a seeded CPU generator, so both processes build the same tensor (checked by checksum)."""
    import torch

    g = torch.Generator().manual_seed(1234)
    embeds = torch.randn(batch, s["text_len"], s["text_dim"], generator=g)
    embeds[:, s["text_tokens"]:] = 0  # the reference derives its text mask from nonzero rows
    return embeds


class FixedTextEncoder:
    """A text encoder for our pipeline that answers every request with the shared embeddings (the
    reference's `encode_text` is replaced the same way); the mask is their non-zero rows, as the
    reference derives its own."""

    def __init__(self, s: dict[str, Any]):
        self.s, self.dim = s, s["text_dim"]

    def __call__(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        embeds = text_embeddings(len(texts), self.s)
        return embeds, (embeds != 0).any(dim=-1)

    def to(self, device: Any) -> "FixedTextEncoder":  # MusePipeline.to moves its text encoder
        return self


def ours_pipeline(s: dict[str, Any], dtype: torch.dtype) -> MusePipeline:
    """A `MusePipeline` of the compared sizes: generator and critic drawn from s["seed"], the shared text,
    and a tokenizer that an ids request never runs (the tiny preset's, with this vocabulary)."""
    import dataclasses

    import torch

    from muse.config import TransformerConfig
    from muse.pipeline import MusePipeline, PipelineConfig
    from muse.presets import make_preset
    from muse.transformer import MaskedTransformer
    from muse.vq import VQModel

    common = dict(num_tokens=s["num_tokens"], seq_len=s["grid"] ** 2, dim=s["dim"], depth=s["depth"],
                  heads=s["heads"], dim_head=s["dim_head"], ff_mult=s["ff_mult"], text_dim=s["text_dim"])
    torch.manual_seed(s["seed"])
    model = MaskedTransformer(TransformerConfig(kind="generator", **common))
    critic = MaskedTransformer(TransformerConfig(kind="critic", **common))
    vq = VQModel(dataclasses.replace(make_preset("tiny").vq, codebook_size=s["num_tokens"]))
    config = PipelineConfig(base_size=s["grid"] * vq.config.downsample)
    return MusePipeline(vq, model, FixedTextEncoder(s), base_critic=critic, config=config).to("cpu", dtype)


class OursRunner:
    """muse's public text-to-image call, token ids out (`output_type="ids"`)."""

    name = "ours"

    def __init__(self, s: dict[str, Any], dtype: str = "auto"):
        import torch

        import muse
        from muse.transformer import inference_dtype

        # auto: the dtype load_pipeline picks for inference on this device
        self.dtype = inference_dtype(torch.device("cpu")) if dtype == "auto" else getattr(torch, dtype)
        self.pipe = ours_pipeline(s, self.dtype)
        self.request = {k: s[k] for k in ("timesteps", "cond_scale", "temperature", "topk_filter_thres",
                                          "critic_noise_scale", "seed")}
        self.version = f"muse {muse.__version__}"

    def generate(self, batch: int, critic: bool) -> torch.Tensor:
        """One request of `batch` prompts: token ids (batch, grid, grid)."""
        return self.pipe([PROMPT] * batch, output_type="ids", superres=False, use_critic=critic, **self.request)


def _stub_torchvision() -> None:
    """A `torchvision` whose functions raise, for the reference's import-time references only."""
    import importlib.machinery
    import types

    def module(name: str) -> types.ModuleType:
        mod = types.ModuleType(name)
        mod.__spec__ = importlib.machinery.ModuleSpec(name, None, is_package=True)
        mod.__path__ = []

        def attribute(attr: str):
            if attr.startswith("__"):
                raise AttributeError(attr)

            def unavailable(*args, **kwargs):
                raise RuntimeError(f"benchmark stub: {name}.{attr} was called; install a real torchvision")

            return unavailable

        mod.__getattr__ = attribute
        sys.modules[name] = mod
        return mod

    root = module("torchvision")
    for sub in ("transforms", "datasets", "utils", "models"):
        setattr(root, sub, module(f"torchvision.{sub}"))


class ReferenceRunner:
    """muse-maskgit-pytorch 0.3.5's MaskGit.generate, text encoder and image decoder replaced."""

    name = "reference"

    def __init__(self, s: dict[str, Any]):
        import torch

        # transformers probes for torchvision on import: import it before any stub exists.
        import transformers
        from transformers import T5Config

        self.stubbed = []
        try:
            import torchvision  # noqa: F401
        except Exception:  # missing, or a build that does not load beside this torch
            for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
                del sys.modules[name]
            _stub_torchvision()
            self.stubbed.append("torchvision")
        import muse_maskgit_pytorch as ref
        from muse_maskgit_pytorch import t5

        self.s, self.torch, self.ref = s, torch, ref
        # Transformer.__init__ reads the text width from T5's config (a download): answer from the cache.
        t5.T5_CONFIGS[t5.DEFAULT_T5_NAME] = {"config": T5Config(d_model=s["text_dim"])}
        sizes = dict(num_tokens=s["num_tokens"], seq_len=s["grid"] ** 2, dim=s["dim"], depth=s["depth"],
                     heads=s["heads"], dim_head=s["dim_head"], ff_mult=s["ff_mult"])
        torch.manual_seed(s["seed"])
        self.transformer = ref.MaskGitTransformer(**sizes)
        self.critic = ref.TokenCritic(**sizes)
        # 2 layers: (4 * grid) px -> grid x grid tokens; only its size matters (decoding is skipped)
        vae = ref.VQGanVAE(dim=16, layers=2, codebook_size=s["num_tokens"], use_vgg_and_gan=False)
        self.maskgit = ref.MaskGit(image_size=s["grid"] * 4, transformer=self.transformer,
                                   token_critic=self.critic, vae=vae)
        self.maskgit.vae.decode_from_ids = lambda ids: ids  # token ids out, no pixel decoding
        self._embeds: dict[int, Any] = {}
        for model in (self.transformer, self.critic):
            model.encode_text = self._encode_text
        import importlib.metadata as md

        self.version = f"muse-maskgit-pytorch {md.version('muse-maskgit-pytorch')}"
        self.transformers_version = transformers.__version__

    def _encode_text(self, texts):
        return self._embeds[len(texts)]

    def generate(self, batch: int, critic: bool):
        s = self.s
        if batch not in self._embeds:
            self._embeds[batch] = text_embeddings(batch, s)
        return self.maskgit.generate(texts=[PROMPT] * batch, fmap_size=s["grid"],
                                     timesteps=s["timesteps"], cond_scale=s["cond_scale"],
                                     temperature=s["temperature"], topk_filter_thres=s["topk_filter_thres"],
                                     critic_noise_scale=s["critic_noise_scale"],
                                     force_not_use_token_critic=not critic)


# ----- the worker process (one per side) ---------------------------------------------------------

def worker(side: str, threads: int, settings: dict[str, Any], dtype: str) -> None:
    """Answer JSON requests on stdin, one per line; replies go to the original stdout, everything
    the libraries print goes to stderr."""
    reply = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    import torch

    torch.set_num_threads(threads)
    runner = ReferenceRunner(settings) if side == "reference" else OursRunner(settings, dtype)
    info = {"side": side, "impl": runner.version, "torch": torch.__version__, "threads": torch.get_num_threads(),
            "python": sys.version.split()[0], "stubbed": getattr(runner, "stubbed", []),
            "dtype": str(runner.dtype).replace("torch.", "") if side == "ours" else "float32"}
    reply.write(json.dumps({"ok": True, "info": info}) + "\n")
    for line in sys.stdin:
        req = json.loads(line)
        if req["op"] == "quit":
            break
        batch, critic = int(req["batch"]), bool(req["critic"])
        if req["op"] == "flops":
            reply.write(json.dumps({"ok": True, "flops": count_flops(runner, batch, critic)}) + "\n")
            continue
        t0, c0 = time.perf_counter(), time.process_time()
        ids = runner.generate(batch, critic)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        ok = tuple(ids.shape) == (batch, settings["grid"], settings["grid"]) and \
            int(ids.min()) >= 0 and int(ids.max()) < settings["num_tokens"]
        embeds = text_embeddings(batch, settings)
        reply.write(json.dumps({"ok": ok, "wall": wall, "cpu": cpu, "shape": list(ids.shape),
                                "embeds_checksum": float(embeds.double().sum())}) + "\n")


def count_flops(runner, batch: int, critic: bool) -> dict[str, float]:
    """Floating-point operations of one `generate`, by operator (torch's FlopCounterMode: matmuls and
    attention; elementwise work is not counted). Its formula for fused attention is registered for the
    CPU kernel too, which it lacks."""
    import torch
    from torch.utils import flop_counter as fc

    mapping = {}
    cpu_flash = getattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu", None)  # keyed by packet
    if cpu_flash is not None:
        mapping[cpu_flash] = lambda query, key, value, *args, out_shape=None, **kwargs: \
            fc.sdpa_flop_count(query, key, value)
    with fc.FlopCounterMode(display=False, custom_mapping=mapping) as counter:
        runner.generate(batch, critic)
    return {str(op): float(n) for op, n in counter.get_flop_counts()["Global"].items()}


class Worker:
    """The driver's handle on one worker process."""

    def __init__(self, side: str, python: str, args: argparse.Namespace, settings: dict[str, Any]):
        self.side = side
        env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads),
                   TQDM_DISABLE="1", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", PYTHONUNBUFFERED="1",
                   TOKENIZERS_PARALLELISM="false")
        # The script puts the repository root first on its path: ours imports the working tree's muse.
        # The reference runs isolated (-I): no PYTHONPATH or user site, and it imports no muse.
        cmd = [python, "-I"] if side == "reference" else [python]
        cmd += [str(Path(__file__).resolve()), "--worker", side, "--threads", str(args.threads),
                "--settings", json.dumps(settings), "--dtype", args.dtype]
        self.log = tempfile.TemporaryFile(mode="w+")
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log,
                                     text=True, env=env, cwd=str(bc.REPO_ROOT))
        self.info = self._read()["info"]

    def _read(self) -> dict[str, Any]:
        line = self.proc.stdout.readline()
        if not line:
            self.log.seek(0)
            tail = self.log.read()[-4000:]
            raise RuntimeError(f"the {self.side} worker exited (code {self.proc.poll()}):\n{tail}")
        return json.loads(line)

    def run(self, batch: int, critic: bool, op: str = "run") -> dict[str, Any]:
        self.proc.stdin.write(json.dumps({"op": op, "batch": batch, "critic": critic}) + "\n")
        self.proc.stdin.flush()
        out = self._read()
        if not out["ok"]:
            raise RuntimeError(f"the {self.side} worker returned invalid ids: {out}")
        return out

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.proc.stdin.write(json.dumps({"op": "quit"}) + "\n")
                self.proc.stdin.flush()
                self.proc.wait(timeout=30)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
        self.log.close()


# ----- the reference's environment ---------------------------------------------------------------

def venv_python(venv: Path) -> Path:
    return venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def ensure_reference_env(venv: Path, torch_version: str, quiet: bool = False) -> Path:
    """Create `venv` with the reference installed (first use only); returns its python.

    torch is pinned to our version so both sides run the same kernels. The reference goes in with
    --no-deps after its dependencies (torchvision left out; see the module docstring)."""
    spec = {"reference": REFERENCE, "torch": torch_version, "deps": REFERENCE_DEPS}
    python = venv_python(venv)
    marker = venv / MARKER
    if python.exists() and marker.is_file():
        try:
            if json.loads(marker.read_text()) == spec:
                return python
        except json.JSONDecodeError:
            pass
    print(f"setting up the reference environment in {venv} (first use; a few minutes)", file=sys.stderr)
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(python), "-m", "pip", "install", "--disable-pip-version-check"] + (["-q"] if quiet else [])
    subprocess.run(pip + [f"torch=={torch_version}", *REFERENCE_DEPS], check=True)
    subprocess.run(pip + ["--no-deps", REFERENCE], check=True)
    marker.write_text(json.dumps(spec, indent=2) + "\n")
    return python


def reference_freeze(python: Path) -> list[str]:
    out = subprocess.run([str(python), "-m", "pip", "freeze", "--disable-pip-version-check"],
                         capture_output=True, text=True)
    return out.stdout.split()


# ----- the driver --------------------------------------------------------------------------------

def parse_args(argv: Optional[list[str]] = None) -> argparse.Namespace:
    d = default_settings()
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=int, default=5, help="timed runs per side and configuration (median)")
    p.add_argument("--warmup", type=int, default=1, help="untimed runs per side and configuration first")
    p.add_argument("--threads", type=int, default=2, help="torch intra-op threads on both sides")
    p.add_argument("--batch", type=int, nargs="+", default=[1, 4])
    p.add_argument("--critic", choices=["off", "on"], nargs="+", default=["off", "on"])
    for key in ("num_tokens", "grid", "dim", "depth", "heads", "dim_head", "ff_mult", "text_dim", "text_len",
                "text_tokens", "timesteps"):
        p.add_argument("--" + key.replace("_", "-"), type=int, default=d[key])
    p.add_argument("--cond-scale", type=float, default=d["cond_scale"])
    p.add_argument("--dtype", choices=["auto", "float32", "bfloat16"], default="auto",
                   help="our transformers' dtype: auto = what muse picks for inference on this CPU "
                        "(muse.transformer.inference_dtype); float32 = the reference's numerics exactly "
                        "(the reference always runs float32)")
    p.add_argument("--ref-venv", type=Path, default=DEFAULT_VENV)
    p.add_argument("--ref-python", type=Path, help="use this interpreter (reference already installed) instead")
    p.add_argument("--json", type=Path, default=bc.RESULTS_DIR / "vs_reference.json")
    p.add_argument("--setup-only", action="store_true", help="create the reference environment and stop")
    p.add_argument("--worker", choices=["reference", "ours"], help=argparse.SUPPRESS)
    p.add_argument("--settings", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.runs < 1 or args.warmup < 0:
        raise SystemExit("--runs must be >= 1 and --warmup >= 0")
    n = args.num_tokens
    if n < 2 or n & (n - 1):
        raise SystemExit("--num-tokens must be a power of two (the reference's VQGanVAE quantizer needs it)")
    if not 0 < args.text_tokens <= args.text_len:
        raise SystemExit("--text-tokens must be in [1, --text-len]")
    return args


def gflop(flops: dict[str, float]) -> float:
    return sum(flops.values()) / 1e9


def settings_from_args(args: argparse.Namespace) -> dict[str, Any]:
    s = default_settings()
    for key in s:
        if hasattr(args, key):
            s[key] = getattr(args, key)
    return s


def time_configuration(workers: dict[str, Worker], batch: int, critic: bool,
                       args: argparse.Namespace) -> dict[str, Any]:
    """Warm-up, then --runs requests per side in ABBA order, then one counted run per side: a results row."""
    times: dict[str, list[float]] = {"reference": [], "ours": []}
    cpu: dict[str, list[float]] = {"reference": [], "ours": []}
    checksums = set()
    for _ in range(args.warmup):
        for side in ("reference", "ours"):
            checksums.add(workers[side].run(batch, critic)["embeds_checksum"])
    for side in bc.abba(args.runs, ("reference", "ours")):
        out = workers[side].run(batch, critic)
        times[side].append(out["wall"])
        cpu[side].append(out["cpu"])
        checksums.add(out["embeds_checksum"])
    if len(checksums) != 1:
        raise RuntimeError(f"the two sides used different text embeddings: {checksums}")
    ref, ours = bc.summary(times["reference"]), bc.summary(times["ours"])
    # Counted after the timed runs, in a run of their own: counting slows a run down.
    flops = {side: workers[side].run(batch, critic, op="flops")["flops"] for side in workers}
    return {"batch": batch, "critic": critic, "reference_s": ref, "ours_s": ours,
            "reference_cpu_s": bc.summary(cpu["reference"]), "ours_cpu_s": bc.summary(cpu["ours"]),
            "ratio": ours["median"] / ref["median"], "reference_flops": flops["reference"],
            "ours_flops": flops["ours"]}


def results_table(results: list[dict[str, Any]]) -> str:
    """The printed table. CPU seconds stand beside wall-clock ones: on a busy machine they are the
    steadier of the two."""
    header = ["batch", "critic", "reference s (min-max)", "ours s (min-max)", "ours/reference",
              "cpu s ref / ours", "cpu ratio", "GFLOP ref / ours", "GFLOP/s ref / ours"]
    rows = [[r["batch"], "on" if r["critic"] else "off",
             f"{r['reference_s']['median']:.3f} ({r['reference_s']['min']:.3f}-{r['reference_s']['max']:.3f})",
             f"{r['ours_s']['median']:.3f} ({r['ours_s']['min']:.3f}-{r['ours_s']['max']:.3f})",
             f"{r['ratio']:.3f}",
             f"{r['reference_cpu_s']['median']:.3f} / {r['ours_cpu_s']['median']:.3f}",
             f"{r['ours_cpu_s']['median'] / r['reference_cpu_s']['median']:.3f}",
             f"{gflop(r['reference_flops']):.1f} / {gflop(r['ours_flops']):.1f}",
             f"{gflop(r['reference_flops']) / r['reference_s']['median']:.0f} / "
             f"{gflop(r['ours_flops']) / r['ours_s']['median']:.0f}"] for r in results]
    return bc.table(header, rows)


def main(argv: Optional[list[str]] = None) -> float:
    args = parse_args(argv)
    if args.worker:
        worker(args.worker, args.threads, json.loads(args.settings), args.dtype)
        return 0.0
    import torch

    torch_version = torch.__version__.split("+")[0]
    ref_python = args.ref_python or ensure_reference_env(args.ref_venv, torch_version)
    if args.setup_only:
        print(f"reference environment ready: {ref_python}")
        return 0.0
    settings = settings_from_args(args)
    workers = {}
    try:
        workers["reference"] = Worker("reference", str(ref_python), args, settings)
        workers["ours"] = Worker("ours", sys.executable, args, settings)
        infos = {k: w.info for k, w in workers.items()}
        for k, info in infos.items():
            print(f"{k:9s}: {info['impl']}, torch {info['torch']}, {info['threads']} threads, {info['dtype']}"
                  + (f", stubbed: {', '.join(info['stubbed'])}" if info["stubbed"] else ""), file=sys.stderr)
        results = []
        for batch in args.batch:
            for critic in (c == "on" for c in args.critic):
                row = time_configuration(workers, batch, critic, args)
                results.append(row)
                print(f"batch {batch} critic {'on ' if critic else 'off'}: reference "
                      f"{row['reference_s']['median']:.3f}s ours {row['ours_s']['median']:.3f}s "
                      f"ratio {row['ratio']:.3f}", file=sys.stderr)
    finally:
        for w in workers.values():
            w.close()

    worst = max(r["ratio"] for r in results)
    s = settings
    print(f"\n{s['grid']}x{s['grid']} tokens, vocabulary {s['num_tokens']}, dim {s['dim']}, depth {s['depth']}, "
          f"heads {s['heads']}x{s['dim_head']}, text context {s['text_len']}x{s['text_dim']}, "
          f"{s['timesteps']} steps, cond_scale {s['cond_scale']:g}; median of {args.runs} after {args.warmup} "
          f"warm-up; {args.threads} threads; ours in {infos['ours']['dtype']}")
    print(results_table(results))
    if args.json:
        data = {"benchmark": "vs_reference", "command": bc.command_line(), "time": time.strftime("%Y-%m-%d %H:%M:%S"),
                "machine": bc.machine_info(), "settings": settings, "runs": args.runs, "warmup": args.warmup,
                "threads": args.threads, "dtype": infos["ours"]["dtype"], "workers": infos,
                "reference_env": reference_freeze(Path(ref_python)), "results": results, "worst_ratio": worst,
                "target": 0.33}
        print(f"results written to {bc.write_json(args.json, data)}", file=sys.stderr)
    print(f"ratio ours/reference: {worst:.3f}")
    return worst


if __name__ == "__main__":
    main()
