"""A resumable training loop: AdamW, warmup + cosine decay, tqdm, checkpoints, loss plots.

Single process on the CPU by default; under `torchrun` (WORLD_SIZE > 1) the same loop wraps the
model in DistributedDataParallel and only rank 0 writes. Checkpoints are safetensors + JSON
(optimizer state included), so resuming never unpickles anything.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from ..transformer import native_bf16
from .paths import EMA_DIR, StageFolder, previous_folder, staging_folder

StepFn = Callable[[nn.Module, torch.Generator], tuple[torch.Tensor, dict, int]]  # -> loss, metrics, batch size


@dataclass
class LoopConfig:
    out_dir: Path  # the stage's folder inside the run
    steps: Optional[int] = None  # stop after this many steps ...
    minutes: Optional[float] = None  # ... or this much training time (across resumes), whichever first
    lr: float = 3e-4
    lr_schedule: str = "cosine"  # "cosine": decay to 0.1x over the budget; "constant": hold after warmup
    warmup: int = 200
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    checkpoint_every_s: float = 300.0
    log_every: int = 25
    seed: int = 0
    amp: bool = True  # bf16 autocast on CUDA
    cpu_amp: bool = False  # ... and on a CPU that computes bf16 natively (measured for the transformers)
    ema_decay: float = 0.0  # > 0: keep an exponential moving average of the weights, exported in their place
    validate_every_s: float = 600.0  # seconds between held-out checks, when the stage has them


@dataclass
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def init_distributed(device: str) -> tuple[Dist, torch.device]:
    """torchrun sets WORLD_SIZE/RANK/LOCAL_RANK; without them this is a single process."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist(), torch.device(device)
    import torch.distributed as dist

    local = int(os.environ.get("LOCAL_RANK", "0"))
    if device.startswith("cuda"):
        torch.cuda.set_device(local)
        device = f"cuda:{local}"
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.startswith("cuda") else "gloo")
    return Dist(dist.get_rank(), world, local), torch.device(device)


def _flatten_optimizer(state: dict) -> tuple[dict[str, torch.Tensor], dict]:
    tensors, scalars = {}, {}
    for idx, entry in state["state"].items():
        for key, value in entry.items():
            if torch.is_tensor(value):
                tensors[f"{idx}.{key}"] = value.detach().cpu().contiguous()
            else:
                scalars[f"{idx}.{key}"] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def _unflatten_optimizer(tensors: dict[str, torch.Tensor], meta: dict) -> dict:
    state: dict = {}
    for name, value in list(tensors.items()) + list(meta["scalars"].items()):
        idx, key = name.split(".", 1)
        state.setdefault(int(idx), {})[key] = value
    return {"state": state, "param_groups": meta["param_groups"]}


class EMA:
    """An exponential moving average of a model's weights, kept as a second model (exported in its place).

    A run that is cut off at any step leaves weights as good as a decayed learning rate would give,
    without tying the schedule to a budget that resumes keep changing. The decay ramps
    up from 0 ((1 + n) / (10 + n) after n updates), so a fresh average does not remember its start.
    """

    def __init__(self, model: nn.Module, decay: float):
        import copy

        self.model = copy.deepcopy(model).eval().requires_grad_(False)
        self.decay, self.updates = decay, 0

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self.updates += 1
        decay = min(self.decay, (1 + self.updates) / (10 + self.updates))
        ema = [t for t in self.model.state_dict().values() if t.is_floating_point()]
        new = [t for t in model.state_dict().values() if t.is_floating_point()]
        torch._foreach_lerp_(ema, new, 1.0 - decay)


def save_checkpoint(folder: Path, model: nn.Module, optimizer: torch.optim.Optimizer, info: dict,
                    ema: Optional[EMA] = None) -> None:
    """model/ (config.json + model.safetensors), optimizer.safetensors + .json, state.json, and ema/ when
    the run keeps an average, all or nothing.

    Everything is written to a sibling folder first, then swapped in with renames: a process killed
    mid-save (a job ended, a machine going away) leaves the previous checkpoint whole
    (`paths.checkpoint_folder` finds it)."""
    tmp, old = staging_folder(folder), previous_folder(folder)
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    model.save_pretrained(tmp / "model")
    if ema is not None:
        ema.model.save_pretrained(tmp / EMA_DIR)
        info = {**info, "ema_updates": ema.updates}
    tensors, meta = _flatten_optimizer(optimizer.state_dict())
    save_file(tensors, str(tmp / "optimizer.safetensors"))
    (tmp / "optimizer.json").write_text(json.dumps(meta))
    (tmp / "state.json").write_text(json.dumps(info))
    shutil.rmtree(old, ignore_errors=True)
    if folder.is_dir():
        os.replace(folder, old)
    os.replace(tmp, folder)
    shutil.rmtree(old, ignore_errors=True)


def load_model_weights(folder: Path, model: nn.Module, part: str = "model") -> None:
    """A checkpoint's (or a seeded stage's) model/ (or ema/) weights into `model`, checked name by name."""
    from ..hub import load_safetensors, strict_load

    strict_load(model, load_safetensors(folder / part / "model.safetensors"), str(folder / part))


def load_checkpoint(folder: Path, model: nn.Module, optimizer: torch.optim.Optimizer) -> dict:
    load_model_weights(folder, model)
    meta = json.loads((folder / "optimizer.json").read_text())
    optimizer.load_state_dict(_unflatten_optimizer(load_file(str(folder / "optimizer.safetensors")), meta))
    return json.loads((folder / "state.json").read_text())


def plot_losses(metrics_file: Path, out_png: Path, title: str) -> None:
    """Loss (and accuracy / PSNR where logged) against step, as a PNG beside the run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [json.loads(line) for line in metrics_file.read_text().splitlines() if line.strip()]
    if not rows:
        return
    skip = ("step", "elapsed_s", "samples_per_s", "lr")
    keys = list(dict.fromkeys(k for r in rows for k in r if k not in skip))  # training and held-out keys
    fig, axes = plt.subplots(1, len(keys), figsize=(4 * len(keys), 3), squeeze=False)
    for ax, key in zip(axes[0], keys):
        pts = [(r["step"], r[key]) for r in rows if key in r]
        ax.plot([p[0] for p in pts], [p[1] for p in pts])
        ax.set_title(key)
        ax.set_xlabel("step")
        if key in ("loss", "ce", "mse", "qloss", "critic_bce"):
            ax.set_yscale("log")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(out_png, dpi=80)
    plt.close(fig)


def make_optimizer(model: nn.Module, cfg: LoopConfig) -> torch.optim.AdamW:
    """AdamW; no weight decay on gains, biases and other vectors."""
    params = [p for p in model.parameters() if p.requires_grad]
    return torch.optim.AdamW([{"params": [p for p in params if p.dim() >= 2], "weight_decay": cfg.weight_decay},
                              {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}],
                             lr=cfg.lr, betas=(0.9, 0.96))


def train_loop(model: nn.Module, step_fn: StepFn, cfg: LoopConfig, device: torch.device, dist_info: Dist,
               desc: str, every_steps: Optional[Callable[[int], None]] = None,
               validate: Optional[Callable[[nn.Module], dict]] = None) -> nn.Module:
    """Run `step_fn` until cfg.steps or cfg.minutes; resume from cfg.out_dir's checkpoint when present.

    `validate(model)` -> held-out metrics, logged every cfg.validate_every_s and at the end, on the
    moving average when the stage keeps one (the weights an export takes)."""
    from tqdm.auto import tqdm

    if cfg.steps is None and cfg.minutes is None:
        raise ValueError("give steps or minutes")
    model.to(device).train()
    optimizer = make_optimizer(model, cfg)
    params = [p for group in optimizer.param_groups for p in group["params"]]
    folder = StageFolder(cfg.out_dir)
    found = folder.latest()
    info = {"step": 0, "elapsed_s": 0.0}
    if (found / "optimizer.safetensors").is_file():
        info = load_checkpoint(found, model, optimizer)
        if dist_info.main:
            print(f"[{desc}] resumed at step {info['step']} ({info['elapsed_s'] / 60:.1f} min trained)")
    elif (found / "model" / "model.safetensors").is_file():  # seeded from a pipeline folder (`init_run`)
        load_model_weights(found, model)
        if dist_info.main:
            print(f"[{desc}] starting from the weights in {found / 'model'} with a fresh optimiser")
    ema = None
    if cfg.ema_decay > 0:
        ema = EMA(model, cfg.ema_decay)  # a seeded or new run averages from its starting weights
        if (found / EMA_DIR / "model.safetensors").is_file():
            load_model_weights(found, ema.model, EMA_DIR)
            ema.updates = info.get("ema_updates", 0)
    net: nn.Module = model
    if dist_info.world > 1:
        net = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    generator = torch.Generator(device=device).manual_seed(cfg.seed + 1000 * info["step"] + dist_info.rank)
    # A CPU with AVX512-BF16 or AMX trains the transformers about 1.45x faster under bf16 autocast
    # (benchmarks/README.md, "Training speed"); elsewhere bf16 is emulated and slower than float32.
    use_amp = cfg.amp and (device.type == "cuda" or (cfg.cpu_amp and native_bf16(device)))
    metrics_file = folder.metrics
    folder.root.mkdir(parents=True, exist_ok=True)
    step, elapsed = info["step"], info["elapsed_s"]
    budget_s = cfg.minutes * 60 if cfg.minutes is not None else math.inf
    total_steps = cfg.steps if cfg.steps is not None else math.inf
    bar = tqdm(total=cfg.steps, initial=step, desc=desc, disable=not dist_info.main, dynamic_ncols=True,
               mininterval=2.0)
    last_ckpt = last_val = time.time()
    validated_at = None

    def log_validation() -> None:
        if validate is None or not dist_info.main:
            return
        row = {"step": step, "elapsed_s": round(elapsed, 1), **validate(ema.model if ema is not None else model)}
        with open(metrics_file, "a") as fh:
            fh.write(json.dumps(row) + "\n")
        print(f"[{desc}] step {step}: " + ", ".join(f"{k} {v:.4g}" for k, v in row.items() if k.startswith("val_")),
              flush=True)

    window_t, window_n = time.time(), 0
    sums: dict[str, float] = {}
    count = 0

    def progress() -> float:
        return min(1.0, max(step / total_steps if total_steps < math.inf else 0.0,
                            elapsed / budget_s if budget_s < math.inf else 0.0))

    stop_file = folder.stop  # `touch STOP` ends the stage early, with a checkpoint
    while step < total_steps and elapsed < budget_s and not stop_file.exists():
        t0 = time.time()
        lr = cfg.lr * min(1.0, (step + 1) / max(1, cfg.warmup))
        if cfg.lr_schedule == "cosine":
            lr *= 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress()))
        for group in optimizer.param_groups:
            group["lr"] = lr
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_amp):
            loss, metrics, batch = step_fn(net, generator)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(params, cfg.grad_clip)
        optimizer.step()
        if ema is not None:
            ema.update(model)
        step += 1
        elapsed += time.time() - t0
        window_n += batch * dist_info.world
        count += 1
        for k, v in metrics.items():
            sums[k] = sums.get(k, 0.0) + v
        if every_steps is not None:
            every_steps(step)
        if step % cfg.log_every == 0 and dist_info.main:
            rate = window_n / max(1e-9, time.time() - window_t)
            row = {"step": step, "elapsed_s": round(elapsed, 1), "lr": lr, "samples_per_s": round(rate, 1),
                   **{k: round(v / count, 5) for k, v in sums.items()}}
            with open(metrics_file, "a") as fh:
                fh.write(json.dumps(row) + "\n")
            bar.set_postfix({k: f"{v / count:.4g}" for k, v in list(sums.items())[:3]} | {"samples/s": f"{rate:.0f}"})
            window_t, window_n, sums, count = time.time(), 0, {}, 0
        bar.update(1)
        if time.time() - last_val > cfg.validate_every_s:
            log_validation()
            last_val, validated_at = time.time(), step
        if dist_info.main and time.time() - last_ckpt > cfg.checkpoint_every_s:
            save_checkpoint(folder.checkpoint, model, optimizer, {"step": step, "elapsed_s": elapsed}, ema)
            last_ckpt = time.time()
    bar.close()
    if stop_file.exists() and dist_info.main:
        stop_file.unlink()
        print(f"[{desc}] stopped early at step {step} (STOP file)")
    if validated_at != step:  # the run's end, unless a check just took it
        log_validation()
    if dist_info.main:
        save_checkpoint(folder.checkpoint, model, optimizer, {"step": step, "elapsed_s": elapsed}, ema)
        if metrics_file.is_file():
            plot_losses(metrics_file, folder.loss_plot, desc)
    model.eval()
    return model
