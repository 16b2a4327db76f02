"""The unmasking orders side by side: for each order the model offers (`muse.settings.ORDERS`) at several
step counts, prompt adherence (names and paraphrases), diversity and super-res fidelity, every other
setting at the pipeline's defaults, on the prompts and seeds of the sweep (`python -m muse.eval orders`)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from typing import Optional

from ..data import CaptionedImages
from ..settings import ORDERS
from .fidelity import superres_fidelity
from .prompts import name_prompts, paraphrase_prompts
from .retrieval import settings_row
from .sheet import settings_sheet

ORDER_STEPS = (4, 8, 12, 24)
ORDER_SHEET_PROMPT = "grinning face"


def offered_orders(pipe) -> list[str]:
    """The orders this model decodes by: all of them, but the critic's only with a critic."""
    return [o for o in ORDERS if o != "critic" or pipe.uses_critic(True)]


def order_settings(order: str, timesteps: Optional[int] = None) -> dict:
    """The request that decodes by `order` and nothing else: use_critic off, so that "confidence" is the
    model's own confidence whatever the weights' defaults say."""
    return {"order": order, "use_critic": False, **({"timesteps": timesteps} if timesteps else {})}


def order_table(pipe, data: CaptionedImages, steps: Sequence[int] = ORDER_STEPS, names: int = 200,
                diversity_names: int = 50, superres_count: int = 32, seed: int = 0,
                log: Callable[[str], None] = print) -> dict:
    """Each offered order at each step count: base-stage adherence on `names` exact names and on the
    paraphrases (top-1/top-5 retrieval, `retrieval.adherence`), diversity over 4 seeds of
    `diversity_names` names (`retrieval.diversity`) and super-res PSNR from `superres_count` perfect
    32 px inputs (`fidelity.superres_fidelity`)."""
    name_rows = name_prompts(data, names, seed)
    paraphrases = paraphrase_prompts(data)
    varied = [p for _, p in name_prompts(data, diversity_names, seed + 1)]
    out: dict = {"names": len(name_rows), "paraphrases": len(paraphrases), "diversity_prompts": len(varied),
                 "superres_images": superres_count, "rows": {}}
    for t in steps:  # a step count at a time, every order: a run cut short still compares them
        for order in offered_orders(pipe):
            settings = order_settings(order, t)
            start = time.time()
            row = settings_row(pipe, data, name_rows, paraphrases, varied, **settings)
            if pipe.superres_model is not None:
                fidelity = superres_fidelity(pipe, data, count=superres_count, seed=seed, **settings)
                row |= {k: fidelity[k] for k in ("superres_psnr", "superres_tokens_psnr")}
            row["seconds"] = round(time.time() - start, 1)
            out["rows"][f"{order}, {t} steps"] = {"order": order, "timesteps": t, **row}
            log(f"orders {order}, {t} steps: " + json.dumps({k: round(v, 4) for k, v in row.items()}))
    return out


def order_sheet(pipe, prompt: str = ORDER_SHEET_PROMPT, steps: Sequence[int] = (4, 12), seeds: Sequence[int] = (0, 1, 2, 3)):
    """One prompt under each offered order (a row each, at each step count in `steps`), four seeds."""
    rows = {f"{order}, {t} steps": order_settings(order, t) for order in offered_orders(pipe) for t in steps}
    return settings_sheet(pipe, rows, [prompt], seeds, scale=2)


__all__ = ["ORDER_STEPS", "ORDER_SHEET_PROMPT", "offered_orders", "order_settings", "order_table", "order_sheet"]
