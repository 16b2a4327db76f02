"""python -m muse.eval WHAT [WHAT ...] [--data data/emoji] [--weights weights] [--out figures.json]

WHAT: tokenizer, superres, inpaint, critic, guidance, adherence, samples, sweep, orders, or all (every
one but the sweep and the orders).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Optional

from ..data import load_dataset
from . import __doc__ as PACKAGE_DOC
from .critic import critic_ranking
from .fidelity import inpaint_fidelity, superres_fidelity, tokenizer_metrics
from .guidance import guidance_gap
from .orders import ORDER_SHEET_PROMPT, ORDER_STEPS, order_sheet, order_table
from .prompts import name_prompts, paraphrase_prompts, prompt_rows
from .retrieval import adherence, random_floor, settings_row
from .sheet import sample_sheet, settings_sheet

PARTS = ("tokenizer", "superres", "inpaint", "critic", "guidance", "adherence", "samples")

# The controls a user moves, one at a time, every other setting at the pipeline's defaults. The critic
# noise rows run with the critic on: without it the noise has nothing to act on.
SWEEP: dict[str, list[dict]] = {
    "cond_scale": [{"cond_scale": v} for v in (1.0, 2.0, 3.0, 5.0, 8.0)],
    "timesteps": [{"timesteps": v} for v in (2, 4, 8, 12, 24)],
    "temperature": [{"temperature": v} for v in (0.25, 0.5, 1.0, 2.0)],
    "critic": [{"use_critic": False}, {"use_critic": True}],
    "critic_noise_scale": [{"use_critic": True, "critic_noise_scale": v} for v in (0.0, 1.0, 2.0, 4.0)],
}
# A name the model has fitted, a held-out paraphrase and a CLDR short name that shares most of its words with
# another emoji's name ("smiling face with heart-eyes"): the sheet shows which controls can change each.
SWEEP_SHEET_PROMPTS = ("rocket", "a magical unicorn", "smiling cat with heart-eyes")


def _label(settings: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in settings.items())


def _timed(label: str, fn, *args, **kwargs):
    t = time.time()
    out = fn(*args, **kwargs)
    print(f"{label}: " + (json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in out.items()})
                          if isinstance(out, dict) else f"{out:.4f}") + f" ({time.time() - t:.0f} s)", flush=True)
    return out


def run_sweep(pipe, data, a) -> dict:
    """Each SWEEP row's adherence (names and paraphrases) and diversity, on the base stage (see
    `retrieval`), against the defaults; a row whose settings are the defaults is run once."""
    names = name_prompts(data, a.sweep_names, a.seed)
    paraphrases = paraphrase_prompts(data)
    varied = [p for _, p in name_prompts(data, a.diversity_names, a.seed + 1)]
    defaults = pipe.settings()
    out: dict = {"names": len(names), "paraphrases": len(paraphrases), "diversity_prompts": len(varied), "rows": {}}
    done: dict[tuple, str] = {}
    for axis, rows in SWEEP.items():
        for settings in rows:
            if "use_critic" in settings and settings["use_critic"] and pipe.base_critic is None:
                continue
            label = _label(settings)
            key = tuple(sorted((k, v) for k, v in settings.items() if getattr(defaults, k) != v))
            if key in done:
                out["rows"][label] = {**out["rows"][done[key]], "same_run_as": done[key]}
                continue
            done[key] = label
            t = time.time()
            row = settings_row(pipe, data, names, paraphrases, varied, **settings)
            row["seconds"] = round(time.time() - t, 1)
            out["rows"][label] = row
            print(f"sweep {label}: " + json.dumps({k: round(v, 4) for k, v in row.items()}), flush=True)
    if a.sweep_sheet:
        sweep_sheet(pipe).save(a.sweep_sheet)
        print(f"wrote {a.sweep_sheet}")
    return out


def sweep_sheet(pipe):
    """SWEEP_SHEET_PROMPTS under each SWEEP setting, seeds 0-3 (`settings_sheet`)."""
    pictures = {_label(s): s for rows in SWEEP.values() for s in rows
                if not (s.get("use_critic") and pipe.base_critic is None)}
    return settings_sheet(pipe, pictures, SWEEP_SHEET_PROMPTS)


def main(argv: Optional[list[str]] = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m muse.eval", description=PACKAGE_DOC,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", nargs="+", choices=(*PARTS, "sweep", "orders", "all"), help="one part or several")
    ap.add_argument("--data", type=Path, default=Path("data/emoji"))
    ap.add_argument("--weights", default=None, help="pipeline folder or Hub id (default: shipped weights/)")
    ap.add_argument("--seed", type=int, default=0, help="which prompts are drawn, and the images' seed")
    ap.add_argument("--names", type=int, default=1000, help="adherence: base-form names (0: all of them)")
    ap.add_argument("--tones", type=int, default=200, help="adherence: skin-tone names (0: all)")
    ap.add_argument("--cldr", type=int, default=300, help="adherence: CLDR short names (0: all)")
    ap.add_argument("--base-only", action="store_true",
                    help="adherence: score the base stage's 32 px images (the same 16x16 features, half the time)")
    ap.add_argument("--sweep-names", type=int, default=200, help="sweep: names scored per setting")
    ap.add_argument("--diversity-names", type=int, default=50, help="sweep: prompts whose 4 seeds give diversity")
    ap.add_argument("--sweep-sheet", type=Path, help="sweep: also draw each setting's pictures here (PNG)")
    ap.add_argument("--order-steps", type=int, nargs="+", default=list(ORDER_STEPS),
                    help="orders: the step counts each order is measured at")
    ap.add_argument("--order-names", type=int, default=200, help="orders: names scored per order and step count")
    ap.add_argument("--order-diversity-names", type=int, default=25,
                    help="orders: prompts whose 4 seeds give diversity")
    ap.add_argument("--order-superres", type=int, default=24, help="orders: images of the super-res fidelity")
    ap.add_argument("--orders-sheet", type=Path, help="orders: also draw one prompt under each order here (PNG)")
    ap.add_argument("--orders-prompt", default=ORDER_SHEET_PROMPT, help="orders: the sheet's prompt")
    ap.add_argument("--sheet", type=Path, default=None, help="samples: where to write the sheet "
                                                             "(default: samples.png in the weights folder)")
    ap.add_argument("--out", type=Path, help="write the figures as JSON here")
    a = ap.parse_args(argv)
    from .. import load_pipeline
    from ..pipeline import DEFAULT_WEIGHTS

    try:
        data = load_dataset(a.data, 64)
        pipe = load_pipeline(a.weights, device="cpu")
    except ValueError as err:  # no dataset or no model there: one line, as the muse command line says it
        print(f"error: {err}", file=sys.stderr)
        return 2
    todo = PARTS if "all" in a.what else tuple(a.what)
    results: dict = {}
    t0 = time.time()
    if "tokenizer" in todo:
        results["tokenizer"] = _timed("tokenizer", tokenizer_metrics, pipe.vq, data, preview=pipe.preview_decoder)
    if "superres" in todo:
        results["superres"] = _timed("superres", superres_fidelity, pipe, data, seed=a.seed)
    if "inpaint" in todo:
        results["inpaint"] = _timed("inpaint", inpaint_fidelity, pipe, data, seed=a.seed)
    if "critic" in todo:
        results["critic"] = _timed("critic", critic_ranking, pipe, data, seed=a.seed)
    if "guidance" in todo:
        results["guidance"] = {}
        for state, figures in guidance_gap(pipe, data, seed=a.seed).items():
            results["guidance"][state] = _timed(f"guidance, {state}", lambda f: f, figures)
    if "adherence" in todo:
        rows = prompt_rows(data, a.names or None, a.tones or None, a.cldr or None, a.seed)
        results["floor"] = random_floor(data, rows.get("names", []), a.seed) if "names" in rows else {}
        results["adherence"] = {}
        for row, prompts in rows.items():
            t = time.time()
            scores = adherence(pipe, data, prompts, base_only=a.base_only)[0]
            results["adherence"][row] = {**scores, "prompts": len(prompts), "seconds": round(time.time() - t, 1)}
            print(f"{row} ({len(prompts)}): top1 {scores['top1']:.1%} top5 {scores['top5']:.1%} "
                  f"({time.time() - t:.0f} s)", flush=True)
        results["adherence_stages"] = "base" if a.base_only else "both"
    if "sweep" in todo:
        results["sweep"] = run_sweep(pipe, data, a)
    if "orders" in todo:
        results["orders"] = order_table(pipe, data, a.order_steps, a.order_names, a.order_diversity_names,
                                        a.order_superres, a.seed, log=lambda line: print(line, flush=True))
        if a.orders_sheet:
            order_sheet(pipe, a.orders_prompt).save(a.orders_sheet)
            print(f"wrote {a.orders_sheet}")
    if "samples" in todo:
        folder = DEFAULT_WEIGHTS if a.weights is None else Path(a.weights) if Path(a.weights).is_dir() else Path(".")
        sheet = a.sheet or folder / "samples.png"
        sample_sheet(pipe).save(sheet)
        print(f"wrote {sheet}")
    results["defaults"] = pipe.settings().__dict__ | {"schedule": str(pipe.settings().schedule)}
    results["seconds"] = round(time.time() - t0, 1)
    if a.out:
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(json.dumps(results, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
