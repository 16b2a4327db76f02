"""The pictures a run shows: one step's frame, the result (final images, their files, before / after)
and the pictures of the whole decoding, drawn by `muse.viz`."""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Optional

from PIL import Image

from .. import viz
from ..pipeline import DecodeStep
from ..token_pipeline import TokenPipeline
from ..settings import GenerationSettings
from .errors import PlaygroundError
from .page import DISPLAY_SIZE, TIMELINE_SIZE, StepSlider, Update, display_size, page_defaults, token_counts
from .requests import check_setting

# Each run's files (final PNG, decoding GIF) go in a folder of their own that outlives the request: on
# ZeroGPU the generator runs in another worker and may end before Gradio has copied its last files.
OUTPUT_ROOT = Path(tempfile.gettempdir()) / "muse-outputs"
OUTPUT_MAX_AGE_S = 3600.0
Labels = tuple[str, str]  # what the before / after images are, written under each


def output_folder(now: Optional[float] = None) -> Path:
    """A new folder for one run's files; folders older than OUTPUT_MAX_AGE_S are removed first."""
    OUTPUT_ROOT.mkdir(parents=True, exist_ok=True)
    now = time.time() if now is None else now
    for old in OUTPUT_ROOT.iterdir():
        with contextlib.suppress(OSError):
            if now - old.stat().st_mtime > OUTPUT_MAX_AGE_S:
                shutil.rmtree(old, ignore_errors=True)
    return Path(tempfile.mkdtemp(prefix="run-", dir=OUTPUT_ROOT))


def step_frame(step: DecodeStep, position: int, planned: int, display: Optional[int] = None) -> Update:
    """What the page shows of one step: its canvas and prediction (when previews drew them), the tokens it
    fixed coloured by what ranked them, a line on what decided it, and the slider at `position`.
    `display`: the display size (default `display_size()`); a streamed step's pictures are half of it."""
    display = display or display_size()
    info = viz.step_summary(step)
    if step.canvas is None:
        info += " · previews were off: no picture of this step"
    size = display if step.is_final else display // 2  # the run's result at the size it is kept at
    return {"canvas": viz.step_canvas(step, size) if step.canvas is not None else None,
            "prediction": viz.step_prediction(step, size) if step.prediction is not None else None,
            "step_tokens": viz.step_tokens(step, display)[0], "step_info": info,
            "scrub": StepSlider(position, planned)}


def result_update(history: list[DecodeStep], settings: GenerationSettings, befores: Optional[list[Image.Image]],
                  tmp: Path, started: float, note: str = "", labels: Labels = ("before", "after"),
                  display: int = DISPLAY_SIZE, streamed: Optional[int] = None) -> Update:
    """The run's result: the final images and their prediction, their files in `tmp` (the PNG at the model's
    resolution and, with previews, the decoding GIF), before / after (`befores`: one image per result, at
    the display size, or None), and the status with the time since `started` (perf_counter) and
    `streamed`, the steps sent live, when it is fewer than the run's."""
    last, seed = history[-1], settings.seed
    final = viz.tile([viz.upscale(im, display) for im in last.canvas])
    png = tmp / f"muse-{seed}.png"
    viz.tile(last.canvas).save(png)  # the model's own resolution
    files = [str(png)]
    previewed = [s for s in history if s.canvas is not None]
    animation = None
    if len(previewed) > 1:  # with previews off only the final canvas exists
        animation = str(viz.decoding_gif(previewed, tmp / f"muse-{seed}.gif"))
        files.append(animation)
    live = (f" · {streamed} of {len(history)} steps shown live (the step slider has each)"
            if streamed is not None and streamed < len(history) else "")
    return {"canvas": final, "prediction": viz.step_prediction(last, display), "seed": seed,
            "before_after": (viz.caption(viz.tile(befores), labels[0]), viz.caption(final, labels[1]))
            if befores is not None else None, "animation": animation, "files": files,
            "status": f"done in {time.perf_counter() - started:.1f} s · {last.label} · {viz.order_words(last)} · "
                      f"seed {seed}{live}{note}"}


def decoding_pictures(history: list[DecodeStep], settings: GenerationSettings,
                      ranking: Optional[str] = None) -> Update:
    """The pictures of the whole decoding: the timeline of every step (with previews), where and when
    each token was fixed and what ranked it (`ranking`, the request's: `muse.settings.ORDERS`; None: read
    from the steps), and the schedule plot of the run's own token counts."""
    previewed = [s for s in history if s.canvas is not None]
    counts: dict[str, int] = {}
    for s in history:
        counts.setdefault(s.stage, s.num_tokens)
    return {"timeline": viz.timeline_sheet(previewed, TIMELINE_SIZE) if len(previewed) > 1 else None,
            "reveal_map": viz.reveal_order_map(history),
            "heat_map": viz.confidence_map(history, ranking=ranking),
            "schedule_plot": viz.schedule_plot(settings.schedule, settings.timesteps, counts)}


def schedule_preview(schedule: Any, timesteps: Any, superres: Any = True) -> Optional[Image.Image]:
    """The schedule plot for the page's current settings; None (leave the plot alone) while one is invalid."""
    try:
        steps, name = check_setting("timesteps", timesteps), check_setting("schedule", schedule)
        counts = token_counts(check_setting("superres", superres))
    except PlaygroundError:
        return None
    return viz.schedule_plot(name, steps, counts)


def warm_up(pipe: TokenPipeline) -> None:
    """Decode one quick image and draw each picture of a run once, so that a first request does not pay
    for first calls (kernels chosen, fonts and colour maps loaded)."""
    steps = list(pipe.stream("warm up", timesteps=2, seed=0, previews=True))
    viz.reveal_order_map(steps), viz.confidence_map(steps), viz.timeline_sheet(steps, TIMELINE_SIZE)
    step_frame(steps[0], 1, len(steps))
    defaults = page_defaults()
    viz.schedule_plot(defaults["schedule"], defaults["timesteps"], token_counts())
