"""The playground's logic, with no UI toolkit in it: its limits, the checking of a request, the model it
serves, and each request streamed as page updates keyed by output name.

`app.py` holds the Gradio side only (components, upload adapters, layout) and maps the names of
`OUTPUTS` to its components. Every setting is checked by the one schema (`muse.settings`), within
the playground's tighter `LIMITS`; a problem to show the user is a `PlaygroundError`.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import os
import secrets
import tempfile
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Iterator, Optional, Sequence

import numpy as np
from PIL import Image

from . import viz
from .config import VQConfig
from .hub import WeightsError
from .images import square, to_rgb
from .loader import PipelineConfig, PipelineSummary, describe
from .pipeline import DecodeStep, MusePipeline, load_pipeline
from .settings import SCHEMA, GenerationSettings, Setting, SettingError, known_settings

log = logging.getLogger("muse.app")  # one logger for the playground, whichever module writes

# The playground's limits (the library accepts more; the page keeps requests quick).
LIMITS: dict[str, tuple[float, float]] = {
    "timesteps": (1, 64), "cond_scale": (0.0, 10.0), "temperature": (0.0, 3.0), "critic_noise_scale": (0.0, 3.0),
    "topk_filter_thres": (0.0, 0.99), "num_images": (1, 4), "seed": (0, 2**32 - 1)}
MAX_PROMPT_CHARS = 100_000  # longer text is cut here; the encoder then keeps its first max_length tokens
DISPLAY_SIZE = 256  # each image on the page, nearest-upscaled
TIMELINE_SIZE = 128

# The page's own switches (no library setting), checked and described like the schema's.
PAGE_SETTINGS: dict[str, Setting] = {s.name: s for s in (
    Setting("randomize_seed", bool, True, label="Randomize seed", help="draw a new seed for every run"),
    Setting("previews", bool, True, label="Previews (off = faster)",
            help="off: only the final image is drawn, which is faster"))}
NEGATIVE_PROMPT_HELP = "what guidance steers away from (replaces the empty prompt of classifier-free guidance)"

# The request's settings that a control built from a `Setting` sets (the schema's or the page's own).
CONTROLS = ("timesteps", "cond_scale", "temperature", "critic_noise_scale", "topk_filter_thres", "use_critic",
            "schedule", "superres", "seed", "randomize_seed", "num_images", "previews")
# Each endpoint's parameters after its image and prompt, in this order (API clients may pass them by
# position); the super-res endpoint has no `superres`.
REQUEST_SETTINGS = ("negative_prompt", *CONTROLS)
# What a request updates on the page. An update is a dict keyed by these names; a name it leaves out
# keeps its value, and None clears it.
OUTPUTS = ("canvas", "prediction", "status", "seed", "before_after", "timeline", "reveal_map", "heat_map",
           "schedule_plot", "animation", "files")
Update = dict[str, Any]


class PlaygroundError(ValueError):
    """A message for the user (about their input, or a model that is not there): shown as it is, with
    a title, never as a traceback."""

    def __init__(self, message: str, title: str = "Error") -> None:
        super().__init__(message)
        self.title = title


# ----- the model: loaded on first use, once --------------------------------------------------------

class LazyModel:
    """Loads MUSE_WEIGHTS (or the shipped weights) on the first request; failures are not cached."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pipe: Optional[MusePipeline] = None
        self._source: Optional[str] = None

    @staticmethod
    def source() -> Optional[str]:
        return os.environ.get("MUSE_WEIGHTS") or None

    def loaded(self) -> Optional[MusePipeline]:
        """The model if it is loaded (from the current source), without loading it."""
        return self._pipe if self._pipe is not None and self._source == self.source() else None

    def get(self) -> MusePipeline:
        """The model, loaded now if it is not (or MUSE_WEIGHTS changed); a PlaygroundError if it cannot be."""
        source = self.source()
        with self._lock:
            if self._pipe is None or self._source != source:
                self._pipe = None
                where = source or "the shipped weights/ folder"
                try:
                    self._pipe = load_pipeline(source)
                    if os.environ.get("MUSE_COMPILE", "").strip() in ("1", "true", "yes"):
                        self._pipe.compile()  # meant for a GPU: see muse.compiled
                except WeightsError as err:
                    raise PlaygroundError(f"The model is not available ({where}): {err}. Set MUSE_WEIGHTS to a "
                                          "model folder or a Hugging Face Hub repo id.", title="No model") from None
                except Exception:
                    log.exception("loading the model from %s failed", where)
                    raise PlaygroundError(f"The model ({where}) could not be loaded; the server log has the "
                                          "details.", title="No model") from None
                self._source = source
                log.info("loaded the model from %s on %s", where, self._pipe.device)
        return self._pipe


MODEL = LazyModel()


def weights_summary() -> PipelineSummary:
    """What the weights' configs say, without loading them. A source that is not a readable local
    folder (a Hub repo id before the first request) reads as the configs' own defaults."""
    try:
        return describe(MODEL.source())
    except (WeightsError, OSError):
        return PipelineSummary(PipelineConfig(), VQConfig().downsample, has_superres=True)


def token_counts(superres: bool = True) -> dict[str, int]:
    """Tokens each stage generates: from the model once loaded, else from its configs."""
    pipe = MODEL.loaded()
    return pipe.token_counts(superres) if pipe is not None else weights_summary().token_counts(superres)


def control(name: str) -> Setting:
    """The setting behind a control of the page: the schema's, or one of the page's own switches."""
    if name in PAGE_SETTINGS:
        return PAGE_SETTINGS[name]
    # A custom schedule (a callable) is for Python callers: the page's messages name only the choices.
    return replace(SCHEMA[name], callables=False)


def page_defaults() -> dict[str, Any]:
    """Every request setting's starting value: the weights' tuned defaults (else the schema's), within
    the playground's limits."""
    tuned = GenerationSettings(**known_settings(weights_summary().config.defaults))  # normalised
    values: dict[str, Any] = {"negative_prompt": ""}
    for name in CONTROLS:
        values[name] = getattr(tuned, name) if name in SCHEMA else PAGE_SETTINGS[name].default
        if name in LIMITS:
            lo, hi = LIMITS[name]
            # A seed of None (draw one) starts at the lowest: "Randomize seed" is on by default.
            values[name] = lo if values[name] is None else min(max(values[name], lo), hi)
    return values


def endpoint_signature(leading: Sequence[str], superres: bool = True) -> inspect.Signature:
    """The parameters an endpoint shows API clients: `leading` (its image and prompt), then the request
    settings by name, each defaulting to the page's value."""
    defaults = page_defaults()
    kind = inspect.Parameter.POSITIONAL_OR_KEYWORD
    return inspect.Signature([inspect.Parameter(name, kind) for name in leading]
                             + [inspect.Parameter(name, kind, default=defaults[name]) for name in REQUEST_SETTINGS
                                if superres or name != "superres"])


# ----- checking a request --------------------------------------------------------------------------

@dataclass(frozen=True)
class Request:
    """A checked request: its prompt, the keyword arguments of `MusePipeline.stream*` and the previews switch."""

    prompt: str
    kwargs: dict[str, Any]
    previews: bool

    @property
    def seed(self) -> int:
        return self.kwargs["seed"]


def check_prompt(value: Any, name: str = "prompt", required: bool = True) -> Optional[str]:
    """The prompt with its whitespace collapsed, cut to MAX_PROMPT_CHARS; None for an optional empty one."""
    if value is None:
        value = ""
    if not isinstance(value, str):
        raise PlaygroundError(f"{name} must be text, got {type(value).__name__}.")
    value = " ".join(value[:4 * MAX_PROMPT_CHARS].split())
    if not value:
        if required:
            raise PlaygroundError("Type a prompt first, for example “red heart” or “grinning face”.",
                                  title="Empty prompt")
        return None
    return value[:MAX_PROMPT_CHARS]


def check_setting(name: str, value: Any) -> Any:
    """One control's value checked in the playground's limits, as an API client may send it (numbers as
    text, flags as 0/1)."""
    try:
        return control(name).check(value, LIMITS.get(name), coerce=True)
    except SettingError as err:
        raise PlaygroundError(str(err)) from None


def check_request(prompt: Any, values: dict[str, Any]) -> Request:
    """A request from the endpoint's values by name (every setting of REQUEST_SETTINGS it takes)."""
    prompt = check_prompt(prompt)
    kwargs = {"negative_prompt": check_prompt(values["negative_prompt"], "negative_prompt", required=False)}
    kwargs.update({name: check_setting(name, values[name]) for name in CONTROLS
                   if name in SCHEMA and name != "seed" and name in values})
    if check_setting("randomize_seed", values["randomize_seed"]):
        kwargs["seed"] = secrets.randbelow(int(LIMITS["seed"][1]) + 1)
    elif values["seed"] is None or values["seed"] == "":
        raise PlaygroundError("Give a seed (a whole number) or turn on “randomize seed”.")
    else:
        kwargs["seed"] = check_setting("seed", values["seed"])
    return Request(prompt, kwargs, check_setting("previews", values["previews"]))


def painted_mask(layer: Image.Image) -> np.ndarray:
    """bool (H, W): the painted pixels of one editor layer. A layer with transparency is painted
    where its alpha is non-zero (the browser's brush strokes); an opaque one is read as a mask
    image, white = regenerate (API callers)."""
    if layer.mode in ("RGBA", "LA"):
        alpha = np.asarray(layer.getchannel("A"))
        if alpha.min() < 255:
            return alpha > 0
    return np.asarray(to_rgb(layer).convert("L")) >= 128


def editor_to_image_and_mask(value: Any) -> tuple[Image.Image, Image.Image]:
    """The image editor's value ({"background", "layers", "composite"}, PIL) -> (RGB image, "L" mask of
    the background's size, white = regenerate)."""
    if not isinstance(value, dict) or (value.get("background") is None and value.get("composite") is None):
        raise PlaygroundError("Upload an image to inpaint first.", title="No image")
    background = value.get("background") or value.get("composite")
    layers = [im for im in value.get("layers") or [] if im is not None]
    if not layers:
        raise PlaygroundError("Paint over the part of the image to regenerate (no mask layer was sent).",
                              title="No mask")
    mask = np.zeros((background.height, background.width), dtype=bool)
    for layer in layers:
        painted = Image.fromarray(painted_mask(layer).astype(np.uint8) * 255)
        if painted.size != background.size:
            # A layer at another scale (a canvas-sized layer) maps onto the background; one of another
            # shape cannot be placed without guessing, so it is refused.
            if abs(painted.width * background.height - painted.height * background.width) > \
                    max(painted.size + background.size):
                raise PlaygroundError(f"The mask is {painted.width}x{painted.height} pixels but the image is "
                                      f"{background.width}x{background.height}: give a mask of the image's size.",
                                      title="Mask size")
            painted = painted.resize(background.size, Image.Resampling.NEAREST)
        mask |= np.asarray(painted) > 0
    if not mask.any():
        raise PlaygroundError("The mask is empty: paint over the part of the image to regenerate "
                              "(or, from the API, send a mask layer that is white there).", title="Empty mask")
    return to_rgb(background), Image.fromarray(mask.astype(np.uint8) * 255, mode="L")


# ----- the three requests ---------------------------------------------------------------------------

def generate(prompt: Any, settings: dict[str, Any]) -> Iterator[Update]:
    """Text to image, streamed: one update per decoding step of each stage."""
    request = check_request(prompt, settings)
    pipe = MODEL.get()
    yield from _updates(pipe, request, pipe.stream(request.prompt, previews=request.previews, **request.kwargs))


def inpaint(image: Any, prompt: Any, settings: dict[str, Any]) -> Iterator[Update]:
    """Regenerate the painted part of an image (editor value: background + mask layers), streamed."""
    rgb, mask = editor_to_image_and_mask(image)
    request = check_request(prompt, settings)
    pipe = MODEL.get()
    before = square(rgb, pipe.output_size(request.kwargs["superres"]))
    steps = pipe.stream_inpaint(rgb, mask, request.prompt, previews=request.previews, **request.kwargs)
    yield from _updates(pipe, request, steps, before)


def superres(image: Any, prompt: Any, settings: dict[str, Any]) -> Iterator[Update]:
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
    steps = pipe.stream_superres(rgb, request.prompt, previews=request.previews, **request.kwargs)
    yield from _updates(pipe, request, steps, square(rgb, pipe.output_size(superres=False)))


def schedule_preview(schedule: Any, timesteps: Any, superres: Any = True) -> Optional[Image.Image]:
    """The schedule plot for the page's current settings; None (leave the plot alone) while one is invalid."""
    try:
        steps, name = check_setting("timesteps", timesteps), check_setting("schedule", schedule)
        counts = token_counts(check_setting("superres", superres))
    except PlaygroundError:
        return None
    return viz.schedule_plot(name, steps, counts)


# ----- a request as page updates ---------------------------------------------------------------------

def truncation_note(pipe: MusePipeline, prompt: str, negative_prompt: Optional[str]) -> str:
    """A status suffix when the text encoder will cut a prompt (it reads only its first max_length tokens)."""
    cut = [name for name, text in (("prompt", prompt), ("negative prompt", negative_prompt))
           if text and pipe.text_encoder.truncates(text)]
    if not cut:
        return ""
    return f" · {' and '.join(cut)} cut to the text encoder's {pipe.text_encoder.max_length} tokens"


def _updates(pipe: MusePipeline, request: Request, steps: Iterator[DecodeStep],
             before: Optional[Image.Image] = None) -> Iterator[Update]:
    """`stream_updates` for a request on `pipe`."""
    before = viz.upscale(before, DISPLAY_SIZE) if before is not None else None
    note = truncation_note(pipe, request.prompt, request.kwargs["negative_prompt"])
    yield from stream_updates(steps, request, has_critic=pipe.uses_critic(request.kwargs["use_critic"]),
                              before=before, note=note)


def stream_updates(steps: Iterator[DecodeStep], request: Request, *, has_critic: bool,
                   before: Optional[Image.Image] = None, note: str = "") -> Iterator[Update]:
    """One update per decoding step of each stage; the first clears the previous run's results, the last
    holds the final image and the pictures of the decoding. `note` is appended to every status line."""
    history: list[DecodeStep] = []
    started = time.perf_counter()
    finished = False
    with tempfile.TemporaryDirectory(prefix="muse-app-") as tmp, contextlib.ExitStack() as stack:
        @stack.callback
        def _report() -> None:  # runs when the stream ends: finished, failed, or closed by a cancel
            if not finished:
                where = history[-1].label if history else "before the first step"
                log.info("request stopped after %s (%.2f s)", where, time.perf_counter() - started)
            steps.close()  # stop the decoding generator now, not when it is garbage-collected

        for step in steps:
            history.append(step)
            if step.is_final:
                finished = True
                yield final_update(history, request, has_critic, before, Path(tmp),
                                   time.perf_counter() - started, note)
                continue
            update: Update = {"status": f"{step.label} · seed {request.seed}{note}"}
            if step.canvas is not None:
                update["canvas"] = viz.step_canvas(step, DISPLAY_SIZE)
            if step.prediction is not None:
                update["prediction"] = viz.step_prediction(step, DISPLAY_SIZE)
            if len(history) == 1:  # clear the previous run's results (the schedule plot stays)
                update = {"canvas": None, "prediction": None, "before_after": None, "timeline": [],
                          "reveal_map": None, "heat_map": None, "animation": None, "files": None,
                          **update, "seed": request.seed}
            yield update


def final_update(history: list[DecodeStep], request: Request, has_critic: bool, before: Optional[Image.Image],
                 tmp: Path, elapsed: float, note: str = "") -> Update:
    """Every output: the final images, their files (in `tmp`) and the pictures of the whole decoding."""
    last, seed = history[-1], request.seed
    final = viz.tile([viz.upscale(im, DISPLAY_SIZE) for im in last.canvas])
    png = tmp / f"muse-{seed}.png"
    viz.tile(last.canvas).save(png)  # the model's own resolution
    files = [str(png)]
    previewed = [s for s in history if s.canvas is not None]
    animation = None
    if len(previewed) > 1:  # with previews off only the final canvas exists
        animation = str(viz.decoding_gif(previewed, tmp / f"muse-{seed}.gif"))
        files.append(animation)
    counts: dict[str, int] = {}
    for s in history:
        counts.setdefault(s.stage, s.num_tokens)
    return {"canvas": final, "prediction": viz.step_prediction(last, DISPLAY_SIZE),
            "status": f"done in {elapsed:.1f} s · {last.label} · seed {seed}{note}", "seed": seed,
            "before_after": (viz.tile([before] * len(last.canvas)), final) if before is not None else None,
            "timeline": viz.timeline(previewed, TIMELINE_SIZE) if len(previewed) > 1 else [],
            "reveal_map": viz.reveal_order_map(history),
            "heat_map": viz.confidence_map(history, critic=has_critic),
            "schedule_plot": viz.schedule_plot(request.kwargs["schedule"], request.kwargs["timesteps"], counts),
            "animation": animation, "files": files}
