"""A request streamed as page updates keyed by output name (`page.OUTPUTS`), at the page's pace: the
three requests of the page (text to image, inpainting, super-res) and the `Pace` that every stream,
the side-by-side one too, keeps."""

from __future__ import annotations

import contextlib
import logging
import math
import threading
import time
from typing import Any, Callable, Iterator, Optional

import numpy as np
from PIL import Image

from .. import viz
from ..batching import current_job
from ..images import square, to_rgb
from ..pipeline import DecodeStep
from ..token_pipeline import TokenPipeline
from ..settings import GenerationSettings
from .errors import PlaygroundError
from .model import MODEL
from .page import PASSING, Update, display_size
from .pictures import Labels, decoding_pictures, output_folder, result_update, step_frame
from .replay import REPLAYS, Run
from .requests import Request, check_request, editor_to_image_and_mask

log = logging.getLogger("muse.app")

DEFAULT_STREAM_FPS = "20"
RESULT_FILES = ("before_after", "animation", "files")  # a result's outputs that only its last update carries


def frame_seconds(stream_fps: Optional[str]) -> float:
    """Seconds between two streamed updates for MUSE_STREAM_FPS's value (updates a second; None: the
    default, 20; 0: every step); a ValueError with a one-line message for a value that is not a number >= 0."""
    raw = (DEFAULT_STREAM_FPS if stream_fps is None else stream_fps).strip()
    try:
        fps = float(raw)
    except ValueError:
        fps = -1.0
    if not 0 <= fps < float("inf"):
        raise ValueError(f"MUSE_STREAM_FPS must be a number of updates a second, 0 for every step; got {raw!r}.")
    return 1 / fps if fps > 0 else 0.0


class Pace:
    """A stream's pace. Steps come sooner than a page draws an update; one that is not due is not drawn and
    not sent, and the next update shows what it fixed too (coalesced). An update is due when both hold:

    - `frame_s` seconds times the streams decoding now have passed since this stream's last update: the
      page's pace is the server's, shared, so that drawing and sending steps costs the same share of the
      machine with one page decoding as with eight, and the model keeps the rest;
    - the stream's reader (the server's handler, when the stream runs as a `muse.batching` job) has taken
      every update sent before: an update it could not take yet would only wait behind the others.

    With `frame_s` 0 every step goes out. A stream counts as decoding from its first update (`went`) until
    `close()`; use it as a context manager."""

    _lock = threading.Lock()
    _decoding = 0  # streams of this process between their first update and their close

    def __init__(self, frame_s: float, clock: Callable[[], float] = time.perf_counter) -> None:
        self.frame_s, self.clock = frame_s, clock
        self.sent = 0  # updates that went out
        self._sent_at = -math.inf
        self._job = current_job()  # None outside a batcher's job: no reader to wait for
        self._counted = False  # among the streams decoding

    @classmethod
    def decoding(cls) -> int:
        """Streams of this process decoding now (between their first update and their close)."""
        return cls._decoding

    def due(self, always: bool = False) -> bool:
        """Whether an update goes out now (`always`: one that must, such as a run's first or a stage's last)."""
        if always or self.frame_s == 0:  # 0: every step, whatever the reader's lag
            return True
        if self._job is not None and self._job.unread:
            return False
        return self.clock() - self._sent_at >= self.frame_s * max(1, self._decoding)

    def went(self) -> None:
        """Count an update that goes out now."""
        if not self._counted:
            with Pace._lock:
                Pace._decoding += 1
            self._counted = True
        self.sent, self._sent_at = self.sent + 1, self.clock()

    def close(self) -> None:
        """The stream has ended (finished, failed or cancelled): it no longer shares the pace."""
        if self._counted:
            with Pace._lock:
                Pace._decoding -= 1
            self._counted = False

    def __enter__(self) -> "Pace":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def truncation_note(pipe: TokenPipeline, prompt: str, negative_prompt: Optional[str]) -> str:
    """A status suffix when the text encoder will cut a prompt (it reads only its first max_length tokens)."""
    cut = [name for name, text in (("prompt", prompt), ("negative prompt", negative_prompt))
           if text and pipe.text_encoder.truncates(text)]
    if not cut:
        return ""
    return f" · {' and '.join(cut)} cut to the text encoder's {pipe.text_encoder.max_length} tokens"


def stream_updates(steps: Iterator[DecodeStep], settings: GenerationSettings, *, ranking: Optional[str] = None,
                   before: Optional[Image.Image] = None, labels: Labels = ("before", "after"), note: str = "",
                   display: Optional[int] = None, counts: Optional[dict[str, int]] = None,
                   frame_s: float = 0.0) -> Iterator[Update]:
    """One update per decoding step of each stage; the first clears the previous run's results. The last
    step comes twice: first the final image and "done" status, its pictures inline as a passing frame's
    (without `RESULT_FILES`), then the whole result (`result_update`: files, before / after) with the
    pictures of the decoding (`decoding_pictures`), so the page shows the image without waiting for the
    figures; the very last update holds every output of the run. `ranking`: what ranks
    the request's tokens (`TokenPipeline.ranking`; None: read from the steps), for the pictures. Every status
    line says what ranked the step's tokens (its unmasking order); `note` is appended to it; `display` is
    the display size (default `display_size()`); `counts`, the tokens each stage will generate when known
    before the run: the first update then shows the request's schedule plot (the page can send it once and
    leave it; the last update draws it from the run's own counts).

    Before / after compares `before` with the result; without one, the first stage's result (its last
    step's canvas, drawn by the full decoder) when a later stage follows: text to image compares the base
    stage's result with the final one.

    `frame_s` paces the stream (`Pace`): the first step, each stage's last and the result always go; with 0,
    every step does. The final status says how many steps went out when some did not. Every step is kept in
    `REPLAYS` for the step slider either way."""
    history: list[DecodeStep] = []
    befores: Optional[list[Image.Image]] = None
    started = time.perf_counter()
    finished = False
    run: Optional[Run] = None
    display = display or display_size()
    with contextlib.ExitStack() as stack:
        pace = stack.enter_context(Pace(frame_s))
        @stack.callback
        def _report() -> None:  # runs when the stream ends: finished, failed, or closed by a cancel
            if run is not None:
                run.finished = True  # what arrived can be replayed, whole or not
            if not finished:
                where = history[-1].label if history else "before the first step"
                log.info("request stopped after %s (%.2f s)", where, time.perf_counter() - started)
            steps.close()  # stop the decoding generator now, not when it is garbage-collected

        for step in steps:
            if run is None:
                run = REPLAYS.start(step.total * step.num_stages)
            history.append(step)
            run.steps.append(step)
            if (before is None and step.stage_index == 0 and step.num_stages > 1 and step.step == step.total
                    and step.canvas is not None):
                befores = [viz.upscale(im, display) for im in step.canvas]
            if step.is_final:
                finished = True
                run.finished = True
                if before is not None:
                    befores = [before] * len(step.canvas)
                # the final canvas and prediction at the display size (the download shows the canvas)
                result = {**step_frame(step, len(history), run.planned, display),
                          **result_update(history, settings, befores, output_folder(), started, note, labels,
                                          display, streamed=pace.sent + 1), "replay": run.key}
                # The image first, inline like a passing frame (the next update replaces it, 50-100 ms later
                # on a CPU): no file for the server to write and serve, nor for an API client to download,
                # twice. Then the whole result, its files, and the pictures of how it was decoded.
                yield {**{k: v for k, v in result.items() if k not in RESULT_FILES}, PASSING: True}
                yield {**result, **decoding_pictures(history, settings, ranking)}
                continue
            if not pace.due(always=len(history) == 1 or step.step == step.total):
                continue  # coalesced into the next update
            update: Update = {"status": f"{step.label} · {viz.order_words(step)} · seed {settings.seed}{note}",
                              **step_frame(step, len(history), run.planned, display), PASSING: True}
            if step.canvas is None:  # previews off: the canvas and prediction keep their place
                del update["canvas"], update["prediction"]
            if len(history) == 1:  # clear the previous run's results (the schedule plot stays)
                update = {"canvas": None, "prediction": None, "before_after": None, "timeline": None,
                          "reveal_map": None, "heat_map": None, "animation": None, "files": None,
                          **update, "seed": settings.seed, "replay": run.key}
                if counts:
                    update["schedule_plot"] = viz.schedule_plot(settings.schedule, settings.timesteps, counts)
            pace.went()
            yield update


def _updates(pipe: TokenPipeline, request: Request, start: Callable[..., Iterator[DecodeStep]], *args: Any,
             before: Optional[Image.Image] = None, labels: Labels = ("before", "after"), note: str = "",
             counts: Optional[dict[str, int]] = None, frame_s: float = 0.0) -> Iterator[Update]:
    """`stream_updates` of `start(*args, prompt, **the request's keyword arguments)`, a streaming method of
    `pipe`. `counts`: the tokens each stage will generate, when known before the run (the schedule plot is
    then shown for it from the first step on)."""
    kwargs = request.pipeline_kwargs(pipe)
    settings: GenerationSettings = kwargs["settings"]
    steps = start(*args, request.prompt, previews=request.previews, **kwargs)
    display = display_size(pipe)
    note += truncation_note(pipe, request.prompt, request.negative_prompt)
    yield from stream_updates(steps, settings, ranking=pipe.ranking(settings),
                              before=viz.upscale(before, display) if before is not None else None, labels=labels,
                              note=note, display=display, counts=counts, frame_s=frame_s)


def generate(prompt: Any, settings: dict[str, Any], frame_s: float = 0.0) -> Iterator[Update]:
    """Text to image, streamed: one update per decoding step of each stage (at most one per `frame_s`
    seconds: `stream_updates`)."""
    request = check_request(prompt, settings)
    pipe = MODEL.get()
    size = pipe.output_size(superres=False)
    superres = request.values.get("superres", False)
    yield from _updates(pipe, request, pipe.stream, labels=(f"base stage {size} px",
                                                            f"final {pipe.output_size(superres)} px"),
                        counts=pipe.token_counts(superres), frame_s=frame_s)


def inpaint(image: Any, prompt: Any, settings: dict[str, Any], frame_s: float = 0.0) -> Iterator[Update]:
    """Regenerate the painted part of an image (editor value: background + mask layers), streamed."""
    rgb, mask = editor_to_image_and_mask(image)
    request = check_request(prompt, settings)
    pipe = MODEL.get()
    before = square(rgb, pipe.output_size(request.values.get("superres", False)))
    share = float((np.asarray(mask) >= 128).mean())
    yield from _updates(pipe, request, pipe.stream_inpaint, rgb, mask, before=before, labels=("original", "inpainted"),
                        note=f" · mask covers {100 * share:.0f}% of the image", frame_s=frame_s)


def superres(image: Any, prompt: Any, settings: dict[str, Any], frame_s: float = 0.0) -> Iterator[Update]:
    """The super-res stage alone, conditioned on a low-resolution image and a prompt, streamed."""
    if image is None:
        raise PlaygroundError("Upload a low-resolution image first.", title="No image")
    if not isinstance(image, Image.Image):
        raise PlaygroundError("The image could not be read.", title="Not an image")
    request = check_request(prompt, settings)
    pipe = MODEL.get()
    if "superres" not in pipe.stage_names(superres=True):
        raise PlaygroundError("This model has no super-res stage.")
    rgb = to_rgb(image)
    size = pipe.output_size(superres=False)
    yield from _updates(pipe, request, pipe.stream_superres, rgb, before=square(rgb, size),
                        counts={"superres": pipe.token_counts()["superres"]},
                        labels=(f"input at {size} px", f"super-res {pipe.output_size(superres=True)} px"),
                        frame_s=frame_s)
