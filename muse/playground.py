"""The playground's logic, with no UI toolkit in it: its limits, the checking of a request, the model it
serves, and each request streamed as page updates keyed by output name.

`app.py` holds the Gradio side only (components, upload adapters, layout) and maps the names of
`OUTPUTS` to its components. Every setting is checked by the one schema (`muse.settings`), within
the playground's tighter `LIMITS`; a problem to show the user is a `PlaygroundError`.
"""

from __future__ import annotations

import contextlib
import inspect
import itertools
import logging
import math
import os
import secrets
import shutil
import tempfile
import threading
import time
from collections import OrderedDict
from concurrent.futures import Future
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Iterator, Optional, Sequence

import numpy as np
import torch
from PIL import Image

from . import viz
from .amused.load import LICENSE as AMUSED_LICENSE
from .amused.load import assumed_summary, is_amused_source
from .compute import COMPUTE
from .config import TransformerConfig, VQConfig
from .hub import WeightsError, read_config
from .images import square, to_rgb
from .loader import PipelineConfig, PipelineSummary, describe, local_folder
from .pipeline import DecodeStep, MusePipeline, load_pipeline
from .settings import (AMUSED_SCHEMA, SCHEMA, AmusedSettings, GenerationSettings, Setting, SettingError,
                       known_settings)

log = logging.getLogger("muse.app")  # one logger for the playground, whichever module writes

# The playground's limits (the library accepts more; the page keeps requests quick).
LIMITS: dict[str, tuple[float, float]] = {
    "timesteps": (1, 64), "cond_scale": (0.0, 10.0), "temperature": (0.0, 3.0), "critic_noise_scale": (0.0, 3.0),
    "topk_filter_thres": (0.0, 0.99), "num_images": (1, 4), "seed": (0, 2**32 - 1)}
MAX_PROMPT_CHARS = 100_000  # longer text is cut here; the encoder then keeps its first max_length tokens
DISPLAY_SIZE = 256  # each image on the page, nearest-upscaled (a larger model's at its own size: `display_size`)
# Each streamed step's canvas and prediction: half the display size, which the page doubles (nearest,
# CSS), pixel for pixel the picture a DISPLAY_SIZE one would be (token outlines included), at a quarter
# of the pixels to encode and send for every step.
STREAM_SIZE = DISPLAY_SIZE // 2
# The inpainting editor's canvas (every upload is fitted into it), so its brush, sized in canvas pixels,
# is the same share of every image: a diameter of 1/8 of the width (adjustable in the editor).
EDIT_SIZE = 256
BRUSH_RADIUS = EDIT_SIZE // 16
TIMELINE_SIZE = 96

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
# position), for a model with a critic and a super-res stage (`PageModel.request_settings` for others);
# the super-res endpoint has no `superres`.
REQUEST_SETTINGS = ("negative_prompt", *CONTROLS)
# The controls of aMUSEd's own settings (`muse.settings.AmusedSettings`), for models that take them.
AMUSED_CONTROLS = tuple(AMUSED_SCHEMA)
CRITIC_CONTROLS = ("use_critic", "critic_noise_scale")  # shown only for a model with a token critic
# What a request updates on the page. An update is a dict keyed by these names; a name it leaves out
# keeps its value, and None clears it.
# step_tokens, step_info and scrub show one step (the latest, or the one scrubbed to); replay is the key
# the step slider replays the run by (`REPLAYS`).
OUTPUTS = ("canvas", "prediction", "status", "seed", "before_after", "timeline", "reveal_map", "heat_map",
           "schedule_plot", "animation", "files", "step_tokens", "step_info", "scrub", "replay")
# What showing one step of a run updates (the step slider and the play button).
STEP_OUTPUTS = ("canvas", "prediction", "step_tokens", "step_info", "scrub")
PICTURE_OUTPUTS = ("timeline", "reveal_map", "heat_map", "schedule_plot")  # `decoding_pictures`, after the result
Update = dict[str, Any]
# An update key, not an output: True on an update whose pictures are passing frames of a run that goes on
# (the next update replaces them), False or absent on a result. The page may send passing frames inline,
# in the update itself, instead of as files the browser then fetches one by one.
PASSING = "passing"
# Side by side: the settings each column sets on its own (the rest is shared), the suffix of each
# column's parameters (use_critic_a, use_critic_b, ...), the shared ones, and what a comparison updates.
COMPARE_SETTINGS = ("use_critic", "critic_noise_scale", "schedule", "cond_scale", "temperature", "timesteps")
COLUMNS = ("a", "b")
COMPARE_SHARED = ("negative_prompt", "seed", "randomize_seed", "superres")
COMPARE_PARAMETERS = (*COMPARE_SHARED, *(f"{name}_{col}" for col in COLUMNS for name in COMPARE_SETTINGS))
COMPARE_OUTPUTS = ("canvas_a", "canvas_b", "status_a", "status_b", "difference", "compare_info", "compare_seed")
REPLAY_RUNS = 32  # runs kept for the step slider (each holds its steps' token grids and small pictures)
PLAY_SPEEDS = (0.2, 3.0)  # seconds per step the play button can be set to


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
        # MUSE_COMPILE=1 compiles the transformers, except where torch.compile cannot run (ZeroGPU).
        self.allow_compile = True
        self._starting = False  # a background load (and its warm-up) is under way
        self.start_error: Optional[str] = None  # why the background load failed, for the page to say

    def is_starting(self) -> bool:
        """Whether the background load (`load_in_background`) or its warm-up is still under way."""
        return self._starting

    def is_ready(self) -> bool:
        """Loaded and warmed up: a request now does not wait for the model."""
        return self.loaded() is not None and not self._starting

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
                        if self.allow_compile:
                            self._pipe.compile()  # meant for a GPU: see muse.compiled
                        else:
                            log.info("MUSE_COMPILE is ignored here: torch.compile does not run on ZeroGPU")
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

    def load_in_background(self, warm_up: bool = True) -> Future:
        """Start loading the model now, on the compute thread (`muse.compute`, where the requests decode), so
        the server can answer (and the page open) meanwhile; a request that comes first waits for it. A
        failure is logged and retried by the next request.
        `warm_up`: then decode one quick image and draw each picture of a run once, so the first request
        does not pay for first calls (kernels chosen, fonts and colour maps loaded)."""
        def load() -> None:
            try:
                pipe = self.get()
                self.start_error = None
                if warm_up:
                    started = time.perf_counter()
                    with self._lock, torch.inference_mode():
                        steps = list(pipe.stream("warm up", timesteps=2, seed=0, previews=True))
                        viz.reveal_order_map(steps), viz.confidence_map(steps), viz.timeline_sheet(steps, TIMELINE_SIZE)
                        step_frame(steps[0], 1, len(steps))
                        viz.schedule_plot(page_defaults()["schedule"], page_defaults()["timesteps"], token_counts())
                    log.info("warmed up in %.1f s", time.perf_counter() - started)
            except PlaygroundError as err:
                self.start_error = str(err)
                log.warning("the model did not load at start: %s", err)
            finally:
                self._starting = False

        self._starting = True
        return COMPUTE.submit(load)


MODEL = LazyModel()

# Each run's files (final PNG, decoding GIF) go in a folder of their own that outlives the request: on
# ZeroGPU the generator runs in another worker and may end before Gradio has copied its last files.
OUTPUT_ROOT = Path(tempfile.gettempdir()) / "muse-outputs"
OUTPUT_MAX_AGE_S = 3600.0


def output_folder(now: Optional[float] = None) -> Path:
    """A new folder for one run's files; folders older than OUTPUT_MAX_AGE_S are removed first."""
    OUTPUT_ROOT.mkdir(parents=True, exist_ok=True)
    now = time.time() if now is None else now
    for old in OUTPUT_ROOT.iterdir():
        with contextlib.suppress(OSError):
            if now - old.stat().st_mtime > OUTPUT_MAX_AGE_S:
                shutil.rmtree(old, ignore_errors=True)
    return Path(tempfile.mkdtemp(prefix="run-", dir=OUTPUT_ROOT))


def weights_summary() -> PipelineSummary:
    """What the weights' configs say, without loading them. A source that is not a readable local
    folder (a Hub repo id before the first request) reads as the configs' own defaults (aMUSEd's for
    an aMUSEd id)."""
    source = MODEL.source()
    try:
        return describe(source)
    except (WeightsError, OSError):
        if is_amused_source(source):
            return assumed_summary(source)
        return PipelineSummary(PipelineConfig(), VQConfig().downsample, has_superres=True)


def _has_critic(source: Optional[str]) -> bool:
    """Whether a muse folder ranks tokens with a critic (a critic component, or the generator's own critic
    head), read from its configs; one that cannot be read is assumed to (the controls stay)."""
    try:
        folder = local_folder(source)
        return (folder / "base_critic").is_dir() or read_config(folder / "base", TransformerConfig).self_critic
    except (WeightsError, OSError):
        return True


@dataclass(frozen=True)
class PageModel:
    """What the page offers for the served model, read from its configs before it loads: its stages and
    sizes, whether it has a token critic, and the settings of its own it takes (aMUSEd's sampler preset
    and micro-conditioning). Controls of a stage or critic the model lacks are not shown or taken."""

    summary: PipelineSummary
    critic: bool = True
    options: tuple[str, ...] = ()  # names of its own settings (AMUSED_CONTROLS)
    family: str = "muse"  # "muse" or "amused"

    @property
    def superres(self) -> bool:
        return self.summary.has_superres

    def output_size(self) -> int:
        return self.summary.output_size(True)

    def controls(self) -> tuple[str, ...]:
        """The settings the page shows and the endpoints take, in order."""
        absent = (set() if self.critic else set(CRITIC_CONTROLS)) | (set() if self.superres else {"superres"})
        return tuple(name for name in CONTROLS if name not in absent) + self.options

    def request_settings(self, superres: bool = True) -> tuple[str, ...]:
        """An endpoint's parameters after its image and prompt (`superres` False: the super-res endpoint's)."""
        return tuple(name for name in ("negative_prompt", *self.controls()) if superres or name != "superres")

    def compare_settings(self) -> tuple[str, ...]:
        """What each side-by-side column sets on its own: the critic where there is one, else the sampler
        preset where the model has one, then the schedule, guidance, temperature and steps."""
        first = CRITIC_CONTROLS if self.critic else ("sampler",) if "sampler" in self.options else ()
        return (*first, *(name for name in COMPARE_SETTINGS if name not in CRITIC_CONTROLS))

    def compare_shared(self) -> tuple[str, ...]:
        """The side-by-side settings shared by both columns (the main settings' values)."""
        own = tuple(name for name in self.options if name not in self.compare_settings())
        return (*(name for name in COMPARE_SHARED if self.superres or name != "superres"), *own)

    def compare_parameters(self) -> tuple[str, ...]:
        return (*self.compare_shared(),
                *(f"{name}_{col}" for col in COLUMNS for name in self.compare_settings()))

    def describe(self) -> str:
        """One line on what is served, for the page's header."""
        if self.superres:
            return (f"every decoding step of the base ({self.summary.image_size('base')} px) and super-res "
                    f"({self.summary.image_size('superres')} px) stages is drawn as it is computed.")
        return f"every decoding step of its one {self.output_size()} px stage is drawn as it is computed."

    def missing(self) -> str:
        """What this model lacks that the page's controls would set, as a note ('' when nothing)."""
        lacks = [what for what, present in (("super-res stage", self.superres), ("token critic", self.critic))
                 if not present]
        if not lacks:
            return ""
        whose = "their" if len(lacks) > 1 else "its"
        return f"This model has no {' and no '.join(lacks)}: {whose} controls are not shown."


def page_model() -> PageModel:
    """The served model (MUSE_WEIGHTS) as the page sees it: from the loaded model, else from its configs."""
    source = MODEL.source()
    pipe = MODEL.loaded()
    summary = pipe.summary if pipe is not None else weights_summary()
    if is_amused_source(source):
        return PageModel(summary, critic=False, options=AMUSED_CONTROLS, family="amused")
    critic = pipe.uses_critic(True) if pipe is not None else _has_critic(source)
    return PageModel(summary, critic=critic)


def display_size(pipe: Optional[MusePipeline] = None) -> int:
    """Side in pixels of each image on the page: DISPLAY_SIZE, or the model's own output size when larger
    (aMUSEd-512's images are shown at 512 px, not shrunk). `pipe`: the model (default: the loaded one)."""
    pipe = pipe or MODEL.loaded()
    size = pipe.output_size(True) if pipe is not None else weights_summary().output_size(True)
    return max(DISPLAY_SIZE, size)


def token_counts(superres: bool = True) -> dict[str, int]:
    """Tokens each stage generates: from the model once loaded, else from its configs."""
    pipe = MODEL.loaded()
    return pipe.token_counts(superres) if pipe is not None else weights_summary().token_counts(superres)


def control(name: str) -> Setting:
    """The setting behind a control of the page: the schema's (aMUSEd's own settings' for theirs), or one
    of the page's own switches."""
    if name in PAGE_SETTINGS:
        return PAGE_SETTINGS[name]
    if name in AMUSED_SCHEMA:
        return AMUSED_SCHEMA[name]
    # A custom schedule (a callable) is for Python callers: the page's messages name only the choices.
    return replace(SCHEMA[name], callables=False)


def limits(name: str) -> tuple[float, float]:
    """A numeric control's range on the page: the playground's tighter one, else its schema's."""
    return LIMITS.get(name) or control(name).limits()


def page_defaults(model: Optional[PageModel] = None) -> dict[str, Any]:
    """Every request setting's starting value: the weights' tuned defaults (else the schema's), within
    the playground's limits; with the model's own settings (aMUSEd's: its defaults, the original size
    its output size)."""
    model = model or page_model()
    tuned = GenerationSettings(**known_settings(model.summary.config.defaults))  # normalised
    values: dict[str, Any] = {"negative_prompt": ""}
    for name in CONTROLS:
        values[name] = getattr(tuned, name) if name in SCHEMA else PAGE_SETTINGS[name].default
        if name in LIMITS:
            lo, hi = LIMITS[name]
            # A seed of None (draw one) starts at the lowest: "Randomize seed" is on by default.
            values[name] = lo if values[name] is None else min(max(values[name], lo), hi)
    for name in model.options:
        values[name] = AMUSED_SCHEMA[name].default
        if name in ("micro_width", "micro_height"):  # aMUSEd tells the model the output size by default
            values[name] = model.output_size()
    return values


def endpoint_signature(leading: Sequence[str], superres: bool = True,
                       model: Optional[PageModel] = None) -> inspect.Signature:
    """The parameters an endpoint shows API clients: `leading` (its image and prompt), then the served
    model's request settings by name (`PageModel.request_settings`), each defaulting to the page's value."""
    model = model or page_model()
    defaults = page_defaults(model)
    kind = inspect.Parameter.POSITIONAL_OR_KEYWORD
    return inspect.Signature([inspect.Parameter(name, kind) for name in leading]
                             + [inspect.Parameter(name, kind, default=defaults[name])
                                for name in model.request_settings(superres)])


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
            raise PlaygroundError("Type a prompt first: a few words on what to draw.",
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


def check_options(values: dict[str, Any], model: PageModel) -> dict[str, Any]:
    """The model's own settings among `values` (aMUSEd's sampler and micro-conditioning), checked by their
    schema, as the pipeline's keyword arguments (`AmusedSettings.options`)."""
    if not model.options:
        return {}
    checked = {name: check_setting(name, values[name]) for name in model.options if name in values}
    try:
        return AmusedSettings(**checked).options()
    except SettingError as err:
        raise PlaygroundError(str(err)) from None


def check_request(prompt: Any, values: dict[str, Any], model: Optional[PageModel] = None) -> Request:
    """A request from the endpoint's values by name (the served model's request settings; a setting it
    does not take, such as the critic of a model without one, is left to the model's defaults)."""
    model = model or page_model()
    prompt = check_prompt(prompt)
    kwargs = {"negative_prompt": check_prompt(values["negative_prompt"], "negative_prompt", required=False)}
    kwargs.update({name: check_setting(name, values[name]) for name in model.controls()
                   if name in SCHEMA and name != "seed" and name in values})
    kwargs.update(check_options(values, model))
    if check_setting("randomize_seed", values["randomize_seed"]):
        kwargs["seed"] = secrets.randbelow(int(LIMITS["seed"][1]) + 1)
    elif values["seed"] is None or values["seed"] == "":
        raise PlaygroundError("Give a seed (a whole number) or turn on “randomize seed”.")
    else:
        kwargs["seed"] = check_setting("seed", values["seed"])
    return Request(prompt, kwargs, check_setting("previews", values["previews"]))


def compare_defaults(model: Optional[PageModel] = None) -> dict[str, Any]:
    """The side-by-side parameters' starting values: the page's, column b with the critic flipped (so
    the first comparison shows what the critic changes), or for a model without a critic and with a
    sampler preset, column b on the other sampler."""
    model = model or page_model()
    d = page_defaults(model)
    values = {name: d[name] for name in model.compare_shared()}
    for col in COLUMNS:
        values.update({f"{name}_{col}": d[name] for name in model.compare_settings()})
    if "use_critic_b" in values:
        values["use_critic_b"] = not d["use_critic"]
    elif "sampler_b" in values:
        values["sampler_b"] = next(s for s in control("sampler").choices if s != d["sampler"])
    return values


def compare_signature(model: Optional[PageModel] = None) -> inspect.Signature:
    """The side-by-side endpoint's parameters: the prompt, the shared settings, then each column's
    settings named like the Python API's with the column's suffix (timesteps_a, timesteps_b)."""
    model = model or page_model()
    defaults = compare_defaults(model)
    kind = inspect.Parameter.POSITIONAL_OR_KEYWORD
    return inspect.Signature([inspect.Parameter("prompt", kind)] + [
        inspect.Parameter(name, kind, default=defaults[name]) for name in model.compare_parameters()])


def check_compare(prompt: Any, values: dict[str, Any]) -> tuple[str, dict[str, Any], list[dict[str, Any]]]:
    """(prompt, shared keyword arguments with the seed, each column's own) of a side-by-side request, every
    setting checked by the schema within the page's limits."""
    model = page_model()
    own = model.compare_settings()
    shared = check_request(prompt, {**page_defaults(model), **{name: values[name] for name in model.compare_shared()},
                                    "num_images": 1, "previews": True}, model)
    # (each column's own settings are also the pipeline's keyword arguments: the sampler preset too)
    columns = [{name: check_setting(name, values[f"{name}_{col}"]) for name in own} for col in COLUMNS]
    kwargs = {k: v for k, v in shared.kwargs.items() if k not in own}
    return shared.prompt, kwargs, columns


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


# ----- replaying a run, step by step ----------------------------------------------------------------

@dataclass(frozen=True)
class StepSlider:
    """The step slider: the step shown (1-based across the run's stages) and the run's number of steps."""

    value: int
    maximum: int


@dataclass
class Run:
    """A run's steps as they arrive (the step slider replays them: nothing is decoded again)."""

    key: str
    planned: int  # steps of every stage, known from the first one
    steps: list[DecodeStep] = field(default_factory=list)
    finished: bool = False


class Replays:
    """The steps of the last `size` runs, by a random key (unguessable: one user cannot replay another's)."""

    def __init__(self, size: int = REPLAY_RUNS) -> None:
        self._lock = threading.Lock()
        self._runs: OrderedDict[str, Run] = OrderedDict()
        self.size = size

    def start(self, planned: int) -> Run:
        run = Run(secrets.token_urlsafe(12), planned)
        with self._lock:
            self._runs[run.key] = run
            while len(self._runs) > self.size:
                self._runs.popitem(last=False)
        return run

    def get(self, key: Any) -> Optional[Run]:
        with self._lock:
            return self._runs.get(key) if isinstance(key, str) else None


REPLAYS = Replays()


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


def _run(key: Any) -> Run:
    run = REPLAYS.get(key)
    if run is None or not run.steps:
        raise PlaygroundError(f"There is no run to replay: generate an image first (the step slider replays the "
                              f"last {REPLAY_RUNS} runs).", title="Nothing to replay")
    return run


def replay(key: Any, step: Any) -> Update:
    """Step `step` (1-based across the stages) of a run, from the steps it already produced; a step not
    decoded yet shows the latest one."""
    run = _run(key)
    k = _step_number(step, run) if step is not None else len(run.steps)
    return step_frame(run.steps[min(k, len(run.steps)) - 1], k if k <= len(run.steps) else len(run.steps),
                      run.planned)


def _step_number(value: Any, run: Run) -> int:
    """A step of `run`, 1 to its planned number, as a slider or an API client sends it."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    if not (math.isfinite(number) and number == int(number) and 1 <= number <= run.planned):
        raise PlaygroundError(f"step must be a whole number from 1 to {run.planned}, got {value!r}.")
    return int(number)


def play_next(key: Any, step: Any) -> tuple[Update, bool]:
    """The step after `step` for the play button, and whether to keep playing (not past the last step of
    a finished run; at the end, play starts again from step 1)."""
    run = _run(key)
    try:
        k = int(float(step))
    except (TypeError, ValueError):
        k = 0
    k = 1 if k >= len(run.steps) and run.finished else min(k + 1, len(run.steps))
    return step_frame(run.steps[k - 1], k, run.planned), not (run.finished and k >= len(run.steps))


def check_speed(value: Any) -> float:
    """Seconds per step of the play button, within PLAY_SPEEDS."""
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        raise PlaygroundError(f"The play speed must be a number of seconds per step, got {value!r}.") from None
    lo, hi = PLAY_SPEEDS
    if not lo <= seconds <= hi:
        raise PlaygroundError(f"The play speed must be between {lo} and {hi} seconds per step, got {seconds}.")
    return seconds


# ----- the three requests ---------------------------------------------------------------------------

def generate(prompt: Any, settings: dict[str, Any], frame_s: float = 0.0) -> Iterator[Update]:
    """Text to image, streamed: one update per decoding step of each stage (at most one per `frame_s`
    seconds: `stream_updates`)."""
    request = check_request(prompt, settings)
    pipe = MODEL.get()
    size = pipe.output_size(superres=False)
    final = pipe.output_size(request.kwargs.get("superres", False))
    yield from _updates(pipe, request, pipe.stream(request.prompt, previews=request.previews, **request.kwargs),
                        labels=(f"base stage {size} px", f"final {final} px"),
                        counts=pipe.token_counts(request.kwargs.get("superres", False)), frame_s=frame_s)


def inpaint(image: Any, prompt: Any, settings: dict[str, Any], frame_s: float = 0.0) -> Iterator[Update]:
    """Regenerate the painted part of an image (editor value: background + mask layers), streamed."""
    rgb, mask = editor_to_image_and_mask(image)
    request = check_request(prompt, settings)
    pipe = MODEL.get()
    before = square(rgb, pipe.output_size(request.kwargs.get("superres", False)))
    share = float((np.asarray(mask) >= 128).mean())
    steps = pipe.stream_inpaint(rgb, mask, request.prompt, previews=request.previews, **request.kwargs)
    yield from _updates(pipe, request, steps, before, labels=("original", "inpainted"),
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
    steps = pipe.stream_superres(rgb, request.prompt, previews=request.previews, **request.kwargs)
    size = pipe.output_size(superres=False)
    yield from _updates(pipe, request, steps, square(rgb, size), counts={"superres": pipe.token_counts()["superres"]},
                        labels=(f"input at {size} px", f"super-res {pipe.output_size(superres=True)} px"),
                        frame_s=frame_s)


def compare(prompt: Any, values: dict[str, Any], frame_s: float = 0.0) -> Iterator[Update]:
    """Side by side: the same prompt and seed decoded with two columns of settings, step for step in turn on
    one worker; each update shows both canvases and where the two runs chose different tokens, and when.
    Paced like `stream_updates`: a pair of steps sooner than `frame_s` after the last update is not drawn
    (the first pair, a column's end and the last pair always are)."""
    prompt, shared, columns = check_compare(prompt, values)
    pipe = MODEL.get()
    seed = shared["seed"]
    streams = [pipe.stream(prompt, previews=True, **shared, **column) for column in columns]
    histories: list[list[DecodeStep]] = [[], []]
    started = time.perf_counter()
    display = display_size()
    sent_at = -math.inf
    try:
        for pair in itertools.zip_longest(*streams):
            for col, history, step in zip(COLUMNS, histories, pair):
                if step is not None:  # else this column has finished: every update still holds its result
                    history.append(step)
            if (len(histories[0]) > 1 and not any(s is not None and s.step == s.total for s in pair)
                    and time.perf_counter() - sent_at < frame_s):
                continue  # coalesced into the next update
            sent_at = time.perf_counter()
            update: Update = {}
            for col, history in zip(COLUMNS, histories):
                last = history[-1]
                update[f"canvas_{col}"] = viz.step_canvas(last, display)
                update[f"status_{col}"] = ("done · " if last.is_final else "") + last.label
            update["difference"] = viz.difference_map(*histories, size=display * 3 // 4)
            update["compare_info"] = _difference_line(histories, time.perf_counter() - started)
            if len(histories[0]) == 1:
                update["compare_seed"] = seed
            update[PASSING] = not all(h[-1].is_final for h in histories)
            yield update
    finally:
        for stream in streams:
            stream.close()  # a cancelled comparison stops both decodings now


def _difference_line(histories: list[list[DecodeStep]], elapsed: float) -> str:
    """Where the two runs differ so far, per stage both reached."""
    done = all(h and h[-1].is_final for h in histories)
    parts = []
    for stage, (differs, when) in viz.difference_grids(*histories).items():
        both = np.isfinite(when)
        line = f"{viz.STAGE_NAMES.get(stage, stage)}: {int(differs.sum())} of {int(both.sum())} tokens fixed in both differ"
        if differs.any():
            line += f" (the first by {100 * float(np.nanmin(when[differs])):.0f}% of the runs)"
        parts.append(line)
    return ("done in %.1f s · " % elapsed if done else "") + "; ".join(parts)


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


Labels = tuple[str, str]  # what the before / after images are, written under each


def _updates(pipe: MusePipeline, request: Request, steps: Iterator[DecodeStep], before: Optional[Image.Image] = None,
             labels: Labels = ("before", "after"), note: str = "",
             counts: Optional[dict[str, int]] = None, frame_s: float = 0.0) -> Iterator[Update]:
    """`stream_updates` for a request on `pipe` (a setting the request leaves out is the model's default).
    `counts`: the tokens each stage will generate, when known before the run (the schedule plot is then
    shown for it from the first step on)."""
    display = display_size(pipe)
    before = viz.upscale(before, display) if before is not None else None
    note += truncation_note(pipe, request.prompt, request.kwargs["negative_prompt"])
    use_critic = request.kwargs.get("use_critic", pipe.settings().use_critic)
    yield from stream_updates(steps, request, has_critic=pipe.uses_critic(use_critic), before=before, labels=labels,
                              note=note, display=display, counts=counts, frame_s=frame_s)


def stream_updates(steps: Iterator[DecodeStep], request: Request, *, has_critic: bool,
                   before: Optional[Image.Image] = None, labels: Labels = ("before", "after"), note: str = "",
                   display: Optional[int] = None, counts: Optional[dict[str, int]] = None,
                   frame_s: float = 0.0) -> Iterator[Update]:
    """One update per decoding step of each stage; the first clears the previous run's results. The last
    step comes twice: first with the result (final image, files, "done" status: `result_update`), then
    with the pictures of the decoding added (`decoding_pictures`), so the page shows the image without
    waiting for the figures; the very last update holds every output of the run. `note` is appended to
    every status line; `display` is the display size (default `display_size()`); `counts`, the tokens each
    stage will generate when known before the run: the first update then shows the request's schedule plot
    (the page can send it once and leave it; the last update draws it from the run's own counts).

    Before / after compares `before` with the result; without one, the first stage's result (its last
    step's canvas, drawn by the full decoder) when a later stage follows: text to image compares the base
    stage's result with the final one.

    `frame_s` paces the stream: a step that comes sooner than `frame_s` seconds after the last update is
    not drawn and not sent (coalesced: the next update shows what it fixed too). The first step, each
    stage's last and the result always go; with 0, every step does. The final status says how many steps
    went out when some did not. Every step is kept in `REPLAYS` for the step slider either way."""
    history: list[DecodeStep] = []
    befores: Optional[list[Image.Image]] = None
    started = time.perf_counter()
    finished = False
    run: Optional[Run] = None
    display = display or display_size()
    sent, sent_at = 0, -math.inf
    with contextlib.ExitStack() as stack:
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
                          **result_update(history, request, befores, output_folder(), started, note, labels,
                                          display, streamed=sent + 1), "replay": run.key}
                yield result  # the image and its files first, then the pictures of how it was decoded
                yield {**result, **decoding_pictures(history, request, has_critic)}
                continue
            if len(history) > 1 and step.step < step.total and time.perf_counter() - sent_at < frame_s:
                continue  # coalesced into the next update (steps come faster than a page draws them)
            update: Update = {"status": f"{step.label} · seed {request.seed}{note}",
                              **step_frame(step, len(history), run.planned, display), PASSING: True}
            if step.canvas is None:  # previews off: the canvas and prediction keep their place
                del update["canvas"], update["prediction"]
            if len(history) == 1:  # clear the previous run's results (the schedule plot stays)
                update = {"canvas": None, "prediction": None, "before_after": None, "timeline": None,
                          "reveal_map": None, "heat_map": None, "animation": None, "files": None,
                          **update, "seed": request.seed, "replay": run.key}
                if counts:
                    update["schedule_plot"] = viz.schedule_plot(request.kwargs["schedule"],
                                                                request.kwargs["timesteps"], counts)
            sent, sent_at = sent + 1, time.perf_counter()
            yield update


def result_update(history: list[DecodeStep], request: Request, befores: Optional[list[Image.Image]], tmp: Path,
                  started: float, note: str = "", labels: Labels = ("before", "after"), display: int = DISPLAY_SIZE,
                  streamed: Optional[int] = None) -> Update:
    """The run's result: the final images and their prediction, their files in `tmp` (the PNG at the model's
    resolution and, with previews, the decoding GIF), before / after (`befores`: one image per result, at
    the display size, or None), and the status with the time since `started` (perf_counter) and
    `streamed`, the steps sent live, when it is fewer than the run's."""
    last, seed = history[-1], request.seed
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
            "status": f"done in {time.perf_counter() - started:.1f} s · {last.label} · seed {seed}{live}{note}"}


def decoding_pictures(history: list[DecodeStep], request: Request, has_critic: bool) -> Update:
    """The pictures of the whole decoding: the timeline of every step (with previews), where and when
    each token was fixed and how confident it was, and the schedule plot of the run's own token counts."""
    previewed = [s for s in history if s.canvas is not None]
    counts: dict[str, int] = {}
    for s in history:
        counts.setdefault(s.stage, s.num_tokens)
    return {"timeline": viz.timeline_sheet(previewed, TIMELINE_SIZE) if len(previewed) > 1 else None,
            "reveal_map": viz.reveal_order_map(history),
            "heat_map": viz.confidence_map(history, critic=has_critic),
            "schedule_plot": viz.schedule_plot(request.kwargs["schedule"], request.kwargs["timesteps"], counts)}
