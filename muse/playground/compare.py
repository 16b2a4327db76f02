"""Side by side: one prompt and seed decoded under two columns of settings, step for step in turn, with
where and when the two runs chose differently."""

from __future__ import annotations

import functools
import inspect
import itertools
import time
from dataclasses import dataclass
from typing import Any, Iterator, Mapping, Optional

import numpy as np

from .. import viz
from ..pipeline import DecodeStep
from .model import MODEL, batcher
from .page import PASSING, PageModel, Update, control, display_size, page_defaults, page_model
from .requests import Request, check_order, check_request, check_setting
from .stream import Pace

COLUMNS = ("a", "b")
COMPARE_OUTPUTS = ("canvas_a", "canvas_b", "status_a", "status_b", "difference", "compare_info", "compare_seed")


@dataclass(frozen=True)
class Parameter:
    """A parameter of the side-by-side endpoint: its name, the setting it sets, and for which column (None:
    both). A column's parameters are named like the Python API's settings with its suffix (timesteps_a)."""

    name: str
    setting: str
    column: Optional[str] = None


def compare_parameters(model: Optional[PageModel] = None) -> tuple[Parameter, ...]:
    """The side-by-side endpoint's parameters after the prompt: the shared settings, then each column's."""
    model = model or page_model()
    return (*(Parameter(name, name) for name in model.compare_shared()),
            *(Parameter(f"{name}_{col}", name, col) for col in COLUMNS for name in model.compare_settings()))


def compare_defaults(model: Optional[PageModel] = None) -> dict[str, Any]:
    """The side-by-side parameters' starting values: the page's, column b in the Halton order (so the first
    comparison shows what the unmasking order changes; in the confidence order where the page's is already
    Halton). For aMUSEd column b also decodes with our sampler, the one that takes an order other than
    confidence (aMUSEd's own rules rank by confidence alone)."""
    model = model or page_model()
    d = page_defaults(model)
    values = {p.name: d[p.setting] for p in compare_parameters(model)}
    if "order_b" in values:
        values["order_b"] = "halton" if d["order"] != "halton" else "confidence"
    if values.get("sampler_b") == "amused" and values.get("order_b") != "confidence":
        values["sampler_b"] = next(s for s in control("sampler").choices if s != "amused")
    return values


def compare_signature(model: Optional[PageModel] = None) -> inspect.Signature:
    """The side-by-side endpoint's parameters: the prompt, the shared settings, then each column's."""
    model = model or page_model()
    defaults = compare_defaults(model)
    kind = inspect.Parameter.POSITIONAL_OR_KEYWORD
    return inspect.Signature([inspect.Parameter("prompt", kind)] + [
        inspect.Parameter(p.name, kind, default=defaults[p.name]) for p in compare_parameters(model)])


def check_compare(prompt: Any, values: Mapping[str, Any]) -> list[Request]:
    """Each column's request of a side-by-side run: the shared settings and the column's own, every setting
    checked by the schema within the page's limits."""
    model = page_model()
    parameters = compare_parameters(model)
    shared = check_request(prompt, {**page_defaults(model), "num_images": 1, "previews": True,
                                    **{p.setting: values[p.name] for p in parameters if p.column is None}}, model)
    columns = [shared.with_values({p.setting: check_setting(p.setting, values[p.name], model)
                                   for p in parameters if p.column == col}) for col in COLUMNS]
    for column in columns:
        check_order(column.values["order"], column.options)
    return columns


def compare(prompt: Any, values: dict[str, Any], frame_s: float = 0.0) -> Iterator[Update]:
    """Side by side: the same prompt and seed decoded with two columns of settings, each column a job of the
    process's batcher (`model.batcher`), so that their steps share forward passes; each update shows both canvases, each column's step and what ranked its tokens (its
    unmasking order), and where the two runs chose different tokens, and when.
    Paced like `stream_updates` (`Pace`): a pair of steps that is not due is not drawn (the first pair, a
    column's end and the last pair always are). Where the batcher decodes one image at a
    time (MUSE_MAX_BATCH=1), both columns decode here, step for step in turn."""
    requests = check_compare(prompt, values)
    pipe = MODEL.get()
    together = batcher().max_batch > 1  # else column b would wait for all of column a before its first step
    start = functools.partial(batcher().stream, pipe.stream) if together else pipe.stream
    streams = [start(r.prompt, previews=r.previews, **r.pipeline_kwargs(pipe)) for r in requests]
    histories: list[list[DecodeStep]] = [[], []]
    started = time.perf_counter()
    display = display_size()
    pace = Pace(frame_s)
    try:
        for pair in itertools.zip_longest(*streams):
            for history, step in zip(histories, pair):
                if step is not None:  # else this column has finished: every update still holds its result
                    history.append(step)
            if not pace.due(always=len(histories[0]) == 1 or any(s is not None and s.step == s.total for s in pair)):
                continue  # coalesced into the next update
            update: Update = {}
            for col, history in zip(COLUMNS, histories):
                last = history[-1]
                update[f"canvas_{col}"] = viz.step_canvas(last, display)
                done = "done · " if last.is_final else ""
                update[f"status_{col}"] = f"{done}{last.label} · {viz.order_words(last)}"
            update["difference"] = viz.difference_map(*histories, size=display * 3 // 4)
            update["compare_info"] = _difference_line(histories, time.perf_counter() - started)
            if len(histories[0]) == 1:
                update["compare_seed"] = requests[0].seed
            update[PASSING] = not all(h[-1].is_final for h in histories)
            pace.went()
            yield update
    finally:
        pace.close()
        for stream in streams:
            stream.close()  # a cancelled comparison stops both decodings now


def _difference_line(histories: list[list[DecodeStep]], elapsed: float) -> str:
    """Where the two runs differ so far, per stage both reached."""
    done = all(h and h[-1].is_final for h in histories)
    parts = []
    for stage, (differs, when) in viz.difference_grids(*histories).items():
        both = np.isfinite(when)
        line = (f"{viz.STAGE_NAMES.get(stage, stage)}: {int(differs.sum())} of {int(both.sum())} tokens fixed in "
                "both differ")
        if differs.any():
            line += f" (the first by {100 * float(np.nanmin(when[differs])):.0f}% of the runs)"
        parts.append(line)
    return ("done in %.1f s · " % elapsed if done else "") + "; ".join(parts)
