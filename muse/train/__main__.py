"""python -m muse.train STAGE --data data/emoji --run runs/emoji [--minutes M | --steps N] ...

Stages: tokenizer, tokenizer_decoder, base, superres, critics (base_critic, superres_critic), preview,
all (tokenizer, base, superres, critics, preview in order), export (run -> pipeline folder).
Every stage resumes from its checkpoint in the run folder; --init weights/ starts the stages that have
none from the shipped model (fine-tuning, fresh optimiser). For several GPUs or machines:
  torchrun --nproc_per_node 8 -m muse.train base --device cuda ...
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..data.captions import DEFAULT_RECIPE, RECIPES
from ..loader import DEFAULT_WEIGHTS, PIPELINE_NAME
from ..text import DEFAULT_TEXT_ENCODER
from . import stages
from .export import export

STAGES = ("tokenizer", "tokenizer_decoder", "base", "superres", "base_critic", "superres_critic", "critics", "preview",
          "all", "export")


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m muse.train", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("stage", choices=STAGES)
    p.add_argument("--data", type=Path, default=Path("data/emoji"), help="dataset folder (emoji build or images + captions)")
    p.add_argument("--run", type=Path, default=Path("runs/emoji"), help="run folder for checkpoints, logs, plots")
    p.add_argument("--preset", default="emoji", choices=("emoji", "tiny"))
    p.add_argument("--device", default="cpu")
    p.add_argument("--steps", type=int, help="steps per stage")
    p.add_argument("--minutes", type=float, help="training minutes per stage (counted across resumes)")
    p.add_argument("--minutes-each", type=str, help="for 'all': per-stage minutes, e.g. tokenizer=60,base=40,...")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--text-encoder", default=DEFAULT_TEXT_ENCODER, help="Hub id or folder")
    p.add_argument("--init", type=Path, metavar="WEIGHTS",
                   help="start each stage that has no checkpoint yet from this pipeline folder's component "
                        "(e.g. the shipped weights/), with a fresh optimiser")
    p.add_argument("--ema-decay", type=float, default=0.999,
                   help="transformer stages: decay of the weights' moving average that export takes (0: off)")
    p.add_argument("--lr-schedule", default="cosine", choices=("cosine", "constant"),
                   help="cosine: decay to 0.1x over --steps/--minutes; constant: hold (with the moving average, "
                        "a run whose budget grows between resumes)")
    p.add_argument("--captions", default=DEFAULT_RECIPE, choices=RECIPES,
                   help="caption recipe for emoji data (muse.data.captions); changing it rebuilds the run's bank")
    p.add_argument("--checkpoint-every", type=float, default=300.0, help="seconds between checkpoints")
    p.add_argument("--validate-every", type=float, default=600.0,
                   help="seconds between held-out checks of the transformer stages (the curve's points)")
    p.add_argument("--out", type=Path, default=Path("weights"), help="export: pipeline folder to write")
    p.add_argument("--defaults", type=str, default=str(DEFAULT_WEIGHTS),
                   help="export: the generation defaults for pipeline.json, as a JSON object or a pipeline "
                        "folder whose tuned defaults are kept (default: the shipped weights/, when present)")
    p.add_argument("--record-text-encoder", default=DEFAULT_TEXT_ENCODER,
                   help="export: text encoder name written to pipeline.json")
    return p.parse_args(argv)


def read_defaults(value: str) -> dict:
    """`--defaults`: a JSON object, or a pipeline folder (its pipeline.json's defaults); {} for a folder
    that does not exist, so a fresh clone's export without weights/ still runs."""
    if value.lstrip().startswith("{"):
        return json.loads(value)
    config = Path(value) / PIPELINE_NAME
    return json.loads(config.read_text()).get("defaults", {}) if config.is_file() else {}


def main(argv: list[str] | None = None) -> int:
    a = parse(argv)
    if a.threads:
        import torch

        torch.set_num_threads(a.threads)
    if a.stage == "export":
        out = export(a.run, a.out, a.record_text_encoder, read_defaults(a.defaults))
        print(f"wrote {out}")
        return 0
    if a.steps is None and a.minutes is None and not a.minutes_each:
        print("error: give --steps or --minutes (or --minutes-each for 'all')", file=sys.stderr)
        return 2
    args = stages.StageArgs(run=a.run, data=a.data, preset=a.preset, device=a.device, steps=a.steps,
                            minutes=a.minutes, batch_size=a.batch_size, lr=a.lr, seed=a.seed,
                            text_encoder=a.text_encoder, checkpoint_every_s=a.checkpoint_every,
                            validate_every_s=a.validate_every,
                            ema_decay=a.ema_decay, captions=a.captions,
                            lr_schedule=a.lr_schedule)
    each = dict(item.split("=") for item in a.minutes_each.split(",")) if a.minutes_each else {}
    order = {"all": ["tokenizer", "base", "superres", "base_critic", "superres_critic", "preview"],
             "critics": ["base_critic", "superres_critic"]}.get(a.stage, [a.stage])
    if a.init is not None:
        seeded = stages.init_run(a.run, a.init)  # every component: later stages read earlier ones' results
        print(f"seeded {', '.join(seeded) or 'no stage'} from {a.init}")
    for stage in order:
        if stage in each:
            args.minutes = float(each[stage])
        if stage == "tokenizer":
            stages.train_tokenizer(args)
            stages.tokenize(args)
        elif stage == "tokenizer_decoder":
            stages.train_tokenizer(args, decoder_only=True)
        elif stage == "preview":
            stages.train_preview(args)
        else:
            stages.train_transformer(args, stage)
    return 0


if __name__ == "__main__":
    sys.exit(main())
