"""Training step time of the shipped model's transformer stages, float32 against bfloat16 autocast.

    .venv/bin/python benchmarks/train_speed.py [--threads 2] [--steps 8] [--batch-size 32]

One optimiser step is the training loop's: `maskgit_loss` (forward), backward and AdamW, on random ids
and caption embeddings of the emoji preset's shapes. Float32 and autocast steps alternate in ABBA
rounds, each the median of --steps after two warm-up steps, so a drift in the host's speed hits both
alike. The training loop uses autocast where the device computes bfloat16 natively
(`muse.transformer.native_bf16`: AVX512-BF16 or AMX on a CPU). The last line is
`train_speed: base fp32 X ms, bf16 Y ms (Zx); superres ...`.
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
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--steps", type=int, default=8, help="timed steps per measurement")
    p.add_argument("--rounds", type=int, default=2, help="ABBA rounds")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--json", type=Path, default=bc.RESULTS_DIR / "train_speed.json")
    return p.parse_args(argv)


def step_times(stage: str, amp: bool, steps: int, batch: int) -> list[float]:
    import torch

    from muse.presets import make_preset
    from muse.train.losses import maskgit_loss
    from muse.transformer import MaskedTransformer

    cfg = getattr(make_preset("emoji"), stage)
    torch.manual_seed(0)
    model = MaskedTransformer(cfg)
    optimizer = torch.optim.AdamW(model.parameters(), 1e-4)
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(0, cfg.num_tokens, (batch, cfg.seq_len), generator=gen)
    cond = torch.randint(0, cfg.num_tokens, (batch, cfg.cond_seq_len), generator=gen) if cfg.cond_seq_len else None
    embeds, mask = torch.randn(batch, 12, cfg.text_dim, generator=gen), torch.ones(batch, 12, dtype=torch.bool)
    times = []
    for i in range(steps + 2):
        t = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
            loss, _ = maskgit_loss(model, ids, embeds, mask, gen, cond_ids=cond)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if i >= 2:
            times.append(time.perf_counter() - t)
    return times


def main(argv: Optional[list[str]] = None) -> int:
    args = parse_args(argv)
    threads = bc.set_threads(args.threads)
    from muse.transformer import native_bf16

    results: dict = {"machine": bc.machine_info(), "versions": bc.versions(), "threads": threads,
                     "batch_size": args.batch_size, "native_bf16": native_bf16("cpu"), "stages": {}}
    line = []
    for stage in ("base", "superres"):
        runs: dict[str, list[float]] = {"fp32": [], "bf16": []}
        for name in bc.abba(args.rounds, ("fp32", "bf16")):
            runs[name].append(bc.median(step_times(stage, name == "bf16", args.steps, args.batch_size)))
        fp32, bf16 = bc.median(runs["fp32"]), bc.median(runs["bf16"])
        results["stages"][stage] = {"fp32_s": bc.summary(runs["fp32"]), "bf16_s": bc.summary(runs["bf16"]),
                                    "speedup": fp32 / bf16}
        print(bc.table(["stage", "fp32 ms", "bf16 autocast ms", "speedup"],
                       [[stage, f"{fp32 * 1e3:.0f}", f"{bf16 * 1e3:.0f}", f"{fp32 / bf16:.2f}x"]]), flush=True)
        line.append(f"{stage} fp32 {fp32 * 1e3:.0f} ms, bf16 {bf16 * 1e3:.0f} ms ({fp32 / bf16:.2f}x)")
    bc.write_json(args.json, results)
    print("train_speed: " + "; ".join(line))
    return 0


if __name__ == "__main__":
    sys.exit(main())
