"""muse playground: watch MaskGIT decode, step by step, in the browser (Gradio 6).

    python app.py    # http://127.0.0.1:7860 (GRADIO_SERVER_NAME / GRADIO_SERVER_PORT override)

The model comes from MUSE_WEIGHTS (a folder or a Hub repo id; unset = the shipped `weights/`),
loaded on the first request, never at import; MUSE_COMPILE=1 compiles its transformers (meant for a
GPU). Three streamed endpoints share one worker: `/generate` (text to image), `/inpaint` and
`/superres`, with parameters named like
`MusePipeline.stream`. Every input is validated here and problems come back as `gr.Error`
messages; server-side failures are logged, never shown as a stack trace.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import json
import logging
import math
import os
import secrets
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

import gradio as gr
import numpy as np
from PIL import Image

from muse import images, viz
from muse.hub import WeightsError
from muse.images import square, to_rgb
from muse.pipeline import DEFAULT_WEIGHTS, PIPELINE_NAME, DecodeStep, MusePipeline, load_pipeline
from muse.schedules import SCHEDULES

try:  # Hugging Face Spaces (ZeroGPU): run the handlers on a GPU; elsewhere a no-op
    import spaces

    gpu: Callable = spaces.GPU
except ImportError:
    def gpu(fn: Callable) -> Callable:
        return fn

log = logging.getLogger("muse.app")

# ----- limits of the playground (the library accepts more; the page keeps requests quick) ------
TIMESTEPS = (1, 64)
COND_SCALE = (0.0, 10.0)
TEMPERATURE = (0.0, 3.0)
CRITIC_NOISE = (0.0, 3.0)
CRITIC_NOISE_INFO = "acts only with the token critic on (tick 'Use the token critic')"
TOPK = (0.0, 0.99)
NUM_IMAGES = (1, 4)
SEED_MAX = 2**32 - 1
MAX_PROMPT_CHARS = 100_000  # longer text is cut here; the encoder then keeps its first max_length tokens
MAX_UPLOAD_PIXELS = 64_000_000  # larger files are refused before they are decoded
WORK_SIZE = 512  # uploads are reduced to this many pixels on the long side (the model sees 32-64 px)
DISPLAY_SIZE = 256  # each image on the page, nearest-upscaled
TIMELINE_SIZE = 128
QUEUE_SIZE = int(os.environ.get("MUSE_QUEUE_SIZE", "16"))
MAX_FILE_SIZE = "50mb"

# Component order of every streamed update (the API returns them in this order too).
OUTPUTS = ("canvas", "prediction", "status", "seed", "before_after", "timeline", "reveal_map", "heat_map",
           "schedule_plot", "animation", "files")

EXAMPLES = [("😀", "grinning face"), ("❤️", "red heart"), ("👍", "thumbs up sign"), ("🚀", "rocket"),
            ("💩", "pile of poo"), ("🐱", "cat face"), ("😎", "smiling face with sunglasses"), ("🔥", "fire")]

EXPLANATION = """
### How MaskGIT decodes
An image is a grid of **tokens** (codes of a small VQ autoencoder: 8x8 tokens for the 32 px base image,
16x16 for the 64 px super-res image). Decoding starts with every token **masked** (grey on the canvas).
At each step the transformer predicts *all* masked tokens at once (the **prediction** panel), the sampler
**keeps** the ones it is surest of (outlined in yellow) and masks the rest again; the **schedule** decides
how many stay masked after each step, and the last step fixes them all. The super-res stage then repeats
this at 64 px, conditioned on the base image's tokens.

| control | what it does |
|---|---|
| **timesteps** | decoding steps per stage: more steps reveal fewer tokens at a time (slower, often cleaner) |
| **cond_scale** | classifier-free guidance: 0 ignores the prompt, 1 is plain conditioning, higher follows it harder |
| **temperature** | randomness of each predicted token (annealed to 0 by the last step); 0 = always the likeliest |
| **critic noise** | noise added to the token critic's scores when choosing what to keep: more = more varied choices. It acts only with **use critic** on; without the critic, the sampler ranks by the model's own confidence |
| **top-k threshold** | drops the least likely codes before sampling: 0.9 keeps the top 10 % |
| **schedule** | the curve of masked tokens per step (see the plot below): cosine reveals few tokens early |
| **use critic** | rank tokens with the separate token critic instead of the model's own confidence |
| **negative prompt** | what guidance steers away from (replaces the empty prompt of classifier-free guidance) |
| **previews** | off: only the final image is drawn, which is faster |

The step-by-step pictures come from a tiny *preview decoder* distilled from the tokenizer's decoder
(about 15 times cheaper, so streaming every step costs little); the final image always comes from the full decoder.

The reveal-order map shows the step that fixed each token; the heat map shows how sure the sampler was
of each token when it kept it (higher is surer).
"""

CSS = """
#canvas img, #prediction img, #timeline img, #before_after img { image-rendering: pixelated; }
#status textarea { font-family: ui-monospace, monospace; }
.caption p { font-size: 0.85em; opacity: 0.8; margin: 0; }
"""


def _theme() -> gr.themes.Base:
    # System fonts: the page must not fetch web fonts (it runs offline and in CI).
    return gr.themes.Soft(primary_hue="orange", secondary_hue="amber",
                          font=["ui-sans-serif", "system-ui", "sans-serif"],
                          font_mono=["ui-monospace", "monospace"])


# ----- the model: loaded on first use, once ------------------------------------------------------

class _LazyPipeline:
    """Loads MUSE_WEIGHTS (or the shipped weights) on the first request; failures are not cached."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pipe: Optional[MusePipeline] = None
        self._source: Optional[str] = None

    @staticmethod
    def source() -> Optional[str]:
        return os.environ.get("MUSE_WEIGHTS") or None

    def loaded(self) -> Optional[MusePipeline]:
        return self._pipe if self._pipe is not None and self._source == self.source() else None

    def get(self) -> MusePipeline:
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
                    raise UserError(f"The model is not available ({where}): {err}. Set MUSE_WEIGHTS to a "
                                    "model folder or a Hugging Face Hub repo id.", title="No model") from None
                except Exception:
                    log.exception("loading the model from %s failed", where)
                    raise UserError(f"The model ({where}) could not be loaded; the server log has the details.",
                                    title="No model") from None
                self._source = source
                log.info("loaded the model from %s on %s", where, self._pipe.device)
        return self._pipe


MODEL = _LazyPipeline()


def get_pipeline() -> MusePipeline:
    """The model, loaded on first use (MUSE_WEIGHTS, or the shipped weights)."""
    return MODEL.get()


def _weights_json() -> dict:
    """pipeline.json of a local weights folder (no model load): slider defaults and token counts."""
    source = _LazyPipeline.source()
    folder = Path(source).expanduser() if source else DEFAULT_WEIGHTS
    try:
        spec = json.loads((folder / PIPELINE_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return spec if isinstance(spec, dict) else {}


def _token_counts(superres: bool = True) -> dict[str, int]:
    """Tokens each stage generates, from the loaded model or else its pipeline.json."""
    pipe = MODEL.loaded()
    if pipe is not None:
        f = pipe.vq.config.downsample
        counts = {"base": (pipe.config.base_size // f) ** 2}
        if pipe.superres_model is not None:
            counts["superres"] = (pipe.config.superres_size // f) ** 2
    else:  # before the first request: the sizes in pipeline.json, 4x downsampling (DESIGN.md)
        spec = _weights_json()
        try:
            counts = {"base": (int(spec.get("base_size", 32)) // 4) ** 2,
                      "superres": (int(spec.get("superres_size", 64)) // 4) ** 2}
        except (TypeError, ValueError):
            counts = {"base": 64, "superres": 256}
    if not superres:
        counts.pop("superres", None)
    return counts


def _ui_defaults() -> dict[str, Any]:
    defaults: dict[str, Any] = dict(timesteps=12, cond_scale=3.0, temperature=1.0, critic_noise_scale=1.0,
                                    topk_filter_thres=0.9, use_critic=True, schedule="cosine", superres=True)
    tuned = _weights_json().get("defaults", {})
    if isinstance(tuned, dict):
        for name, value in tuned.items():
            if name not in defaults:
                continue
            kind = type(defaults[name])
            if type(value) is kind or (kind is float and type(value) is int):
                defaults[name] = value
    clamp = {"timesteps": TIMESTEPS, "cond_scale": COND_SCALE, "temperature": TEMPERATURE,
             "critic_noise_scale": CRITIC_NOISE, "topk_filter_thres": TOPK}
    for name, (lo, hi) in clamp.items():
        defaults[name] = min(max(defaults[name], lo), hi)
    if defaults["schedule"] not in SCHEDULES:
        defaults["schedule"] = "cosine"
    return defaults


# ----- input checking ------------------------------------------------------------------------

class UserError(gr.Error):
    """A message about the user's input: shown on the page (or to the API client), not logged as a
    server fault with a traceback."""

    def __init__(self, message: str, title: str = "Error") -> None:
        super().__init__(message, title=title, print_exception=False)


def _shown(value: Any, limit: int = 40) -> str:
    """repr of a rejected value, cut short: an error message must not echo a 100,000-character input."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "…"


def _fmt(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else f"{x:g}"


def _number(name: str, value: Any, lo: float, hi: float, integer: bool = False) -> float:
    kind = "a whole number" if integer else "a number"
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            raise UserError(f"{name} must be {kind} from {_fmt(lo)} to {_fmt(hi)}, got {_shown(value)}.") from None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or (integer and float(value) != int(value)) or not (lo <= value <= hi):
        raise UserError(f"{name} must be {kind} from {_fmt(lo)} to {_fmt(hi)}, got {_shown(value)}.")
    return int(value) if integer else float(value)


def _flag(name: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise UserError(f"{name} must be true or false, got {_shown(value)}.")


def _prompt(value: Any, name: str = "prompt", required: bool = True) -> Optional[str]:
    if value is None:
        value = ""
    if not isinstance(value, str):
        raise UserError(f"{name} must be text, got {type(value).__name__}.")
    value = " ".join(value[:4 * MAX_PROMPT_CHARS].split())
    if not value:
        if required:
            raise UserError("Type a prompt first, for example “red heart” or “grinning face”.",
                            title="Empty prompt")
        return None
    return value[:MAX_PROMPT_CHARS]


def _settings(negative_prompt, timesteps, cond_scale, temperature, critic_noise_scale, topk_filter_thres,
              use_critic, schedule, seed, randomize_seed, num_images, previews,
              superres: Any = True) -> tuple[dict[str, Any], int, bool]:
    """Checked keyword arguments for `MusePipeline.stream*`, the seed to use, and the previews switch."""
    if not isinstance(schedule, str) or schedule not in SCHEDULES:
        raise UserError(f"schedule must be one of {', '.join(SCHEDULES)}; got {_shown(schedule)}.")
    kwargs = dict(
        negative_prompt=_prompt(negative_prompt, "negative_prompt", required=False),
        timesteps=_number("timesteps", timesteps, *TIMESTEPS, integer=True),
        cond_scale=_number("cond_scale", cond_scale, *COND_SCALE),
        temperature=_number("temperature", temperature, *TEMPERATURE),
        critic_noise_scale=_number("critic_noise_scale", critic_noise_scale, *CRITIC_NOISE),
        topk_filter_thres=_number("topk_filter_thres", topk_filter_thres, *TOPK),
        use_critic=_flag("use_critic", use_critic),
        schedule=schedule,
        superres=_flag("superres", superres),
        num_images=_number("num_images", num_images, *NUM_IMAGES, integer=True),
    )
    if _flag("randomize_seed", randomize_seed):
        seed = secrets.randbelow(SEED_MAX + 1)
    elif seed is None or seed == "":
        raise UserError("Give a seed (a whole number) or turn on “randomize seed”.")
    else:
        seed = _number("seed", seed, 0, SEED_MAX, integer=True)
    kwargs["seed"] = seed
    return kwargs, seed, _flag("previews", previews)


# ----- uploads -------------------------------------------------------------------------------

def open_image(source: Any, what: str = "image") -> Image.Image:
    """An uploaded file (path, bytes or file object) as a decoded PIL image (RGB, or RGBA with
    transparency) at most WORK_SIZE px on its long side; gr.Error for anything unreadable or too large
    (decompression bombs are refused from the header, before decoding). See `muse.images.open_image`."""
    try:
        return images.open_image(source, what, max_pixels=MAX_UPLOAD_PIXELS, max_side=WORK_SIZE)
    except images.ImageError as err:
        title = "Image too large" if "megapixels" in str(err) else "Not an image"
        raise UserError(str(err), title=title) from None


def _open_upload(file: Any, what: str) -> Optional[Image.Image]:
    """A FileData, raw bytes or a data: URL from the browser or the API -> PIL (or None)."""
    if file is None:
        return None
    if isinstance(file, (bytes, bytearray, memoryview)):
        return open_image(file, what)
    path, url = getattr(file, "path", None), getattr(file, "url", None)
    if path:
        return open_image(path, what)
    if url and url.startswith("data:") and "," in url:
        try:
            return open_image(base64.b64decode(url.split(",", 1)[1]), what)
        except (ValueError, TypeError):
            raise UserError(f"The {what} is not valid base64 image data.") from None
    raise UserError(f"The {what} was not received; upload it again.")


@contextlib.contextmanager
def _no_stub_files() -> Iterator[None]:
    """Gradio's component metaclass writes a `<module>.pyi` stub beside the file of every component
    class it creates; the subclasses below must not leave an `app.pyi` in the checkout."""
    try:
        import gradio.component_meta as meta
    except ImportError:  # another Gradio layout: nothing to suppress
        yield
        return
    write = getattr(meta, "create_or_modify_pyi", None)
    if write is None:
        yield
        return
    meta.create_or_modify_pyi = lambda *args, **kwargs: None
    try:
        yield
    finally:
        meta.create_or_modify_pyi = write


def _checked_model(model: type, expected: str) -> type:
    """A subclass of a component's pydantic data model whose validation failure (an API client sending
    a number or a bare string where an uploaded file belongs) is a clear message, not Gradio's
    message-less "the upstream app raised an exception"."""
    from pydantic import ValidationError

    class Checked(model):  # type: ignore[misc, valid-type]
        @classmethod
        def model_validate(cls, obj: Any, *args: Any, **kwargs: Any) -> Any:
            try:
                return super().model_validate(obj, *args, **kwargs)
            except ValidationError:
                raise UserError(f"Expected {expected}; got {_shown(obj)}.", title="Not an image") from None

    Checked.__name__ = Checked.__qualname__ = model.__name__
    return Checked


with _no_stub_files():
    class ImageInput(gr.Image):
        """gr.Image that decodes uploads itself: a non-image file becomes a clear gr.Error, big images are
        reduced before decoding, any mode is accepted. (Template: rendered by Gradio's Image frontend.)"""

        is_template = True
        data_model = _checked_model(gr.Image.data_model, "an uploaded image file (from the API: handle_file(path))")

        def preprocess(self, payload):
            return _open_upload(payload, "image")

    class MaskEditor(gr.ImageEditor):
        """gr.ImageEditor whose value reaches the handler as {"background", "layers", "composite"} PIL
        images decoded like ImageInput (alpha of the layers kept: it is the painted mask)."""

        is_template = True
        data_model = _checked_model(gr.ImageEditor.data_model, "the image and mask as {'background': "
                                    "handle_file(image), 'layers': [handle_file(mask)], 'composite': None}")

        def preprocess(self, payload):
            if payload is None:
                return None
            if payload.id is not None:  # the browser sends the canvas as blobs ahead of the event
                cached = self.blob_storage.pop(payload.id, None)
                background = cached.background if cached else None
                layers = list(cached.layers) if cached else []
                composite = cached.composite if cached else None
            else:
                background, layers, composite = payload.background, payload.layers, payload.composite
            bg = _open_upload(background, "image")
            return {"background": bg,
                    "layers": [im for im in (_open_upload(f, "mask layer") for f in layers or [])
                               if im is not None],
                    "composite": _open_upload(composite, "image") if bg is None else None}

    # The values below reach the handler as sent: the handler checks them and names the parameter
    # (Gradio's own check says only "Value 0 is less than minimum value 1", and fails on NaN).
    # `is_template` makes Gradio render them with the parent's frontend component.
    class Slider(gr.Slider):
        is_template = True

        def preprocess(self, payload):
            return payload

    class Number(gr.Number):
        is_template = True

        def preprocess(self, payload):
            return payload

    class Dropdown(gr.Dropdown):
        is_template = True

        def preprocess(self, payload):
            return payload


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
    """The editor's value -> (RGB image, "L" mask of the background's size, white = regenerate)."""
    if not isinstance(value, dict) or (value.get("background") is None and value.get("composite") is None):
        raise UserError("Upload an image to inpaint first.", title="No image")
    background = value.get("background") or value.get("composite")
    layers = [im for im in value.get("layers") or [] if im is not None]
    if not layers:
        raise UserError("Paint over the part of the image to regenerate (no mask layer was sent).", title="No mask")
    mask = np.zeros((background.height, background.width), dtype=bool)
    for layer in layers:
        painted = Image.fromarray(painted_mask(layer).astype(np.uint8) * 255)
        if painted.size != background.size:
            # A layer at another scale (a canvas-sized layer) maps onto the background; one of another
            # shape cannot be placed without guessing, so it is refused.
            if abs(painted.width * background.height - painted.height * background.width) > \
                    max(painted.size + background.size):
                raise UserError(f"The mask is {painted.width}x{painted.height} pixels but the image is "
                                f"{background.width}x{background.height}: give a mask of the image's size.",
                                title="Mask size")
            painted = painted.resize(background.size, Image.Resampling.NEAREST)
        mask |= np.asarray(painted) > 0
    if not mask.any():
        raise UserError("The mask is empty: paint over the part of the image to regenerate "
                        "(or, from the API, send a mask layer that is white there).", title="Empty mask")
    return to_rgb(background), Image.fromarray(mask.astype(np.uint8) * 255, mode="L")


# ----- streaming a request to the page ---------------------------------------------------------

def _user_errors(handler: Callable[..., Iterator]) -> Callable[..., Iterator]:
    """Errors in a streamed handler become gr.Error messages; unexpected ones are logged, not shown."""

    @functools.wraps(handler)
    def wrapper(*args, **kwargs):
        try:
            yield from handler(*args, **kwargs)
        except gr.Error:
            raise
        except ValueError as err:  # the library's validation messages (WeightsError too)
            raise UserError(str(err)) from None
        except Exception as err:
            log.exception("request failed")
            raise UserError(f"Something went wrong on the server ({type(err).__name__}); the server log has the "
                            "details. Try again, perhaps with other settings.", title="Server error") from None

    return wrapper


def _truncation_note(pipe: MusePipeline, prompt: str, negative_prompt: Optional[str]) -> str:
    """A status suffix when the text encoder will cut a prompt (it reads only its first max_length tokens)."""
    cut = [name for name, text in (("prompt", prompt), ("negative prompt", negative_prompt))
           if text and pipe.text_encoder.truncates(text)]
    if not cut:
        return ""
    return f" · {' and '.join(cut)} cut to the text encoder's {pipe.text_encoder.max_length} tokens"


def _stream(steps: Iterator[DecodeStep], *, seed: int, kwargs: dict[str, Any], has_critic: bool,
            before: Optional[Image.Image] = None, note: str = "") -> Iterator[tuple]:
    """One update per decoding step of each stage (see OUTPUTS); the last one holds the final
    image and the pictures of the decoding. `note` is appended to every status line."""
    skip = gr.skip()
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

        for i, step in enumerate(steps):
            history.append(step)
            if step.is_final:
                elapsed = time.perf_counter() - started
                finished = True
                yield _final_update(history, seed, kwargs, has_critic, before, Path(tmp), elapsed, note)
                continue
            status = f"{step.label} · seed {seed}{note}"
            canvas = viz.step_canvas(step, DISPLAY_SIZE) if step.canvas is not None else (None if i == 0 else skip)
            prediction = viz.step_prediction(step, DISPLAY_SIZE) if step.prediction is not None else \
                (None if i == 0 else skip)
            if i == 0:  # clear the previous run's results
                yield canvas, prediction, status, seed, None, [], None, None, skip, None, None
            else:
                yield canvas, prediction, status, skip, skip, skip, skip, skip, skip, skip, skip


def _final_update(history: list[DecodeStep], seed: int, kwargs: dict[str, Any], has_critic: bool,
                  before: Optional[Image.Image], tmp: Path, elapsed: float, note: str = "") -> tuple:
    last = history[-1]
    final = viz.tile([viz.upscale(im, DISPLAY_SIZE) for im in last.canvas])
    png = tmp / f"muse-{seed}.png"
    viz.tile(last.canvas).save(png)  # the model's own resolution
    files = [str(png)]
    previewed = [s for s in history if s.canvas is not None]
    gallery = viz.timeline(previewed, TIMELINE_SIZE) if len(previewed) > 1 else []
    animation = None
    if len(previewed) > 1:  # with previews off only the final canvas exists
        animation = str(viz.decoding_gif(previewed, tmp / f"muse-{seed}.gif"))
        files.append(animation)
    counts: dict[str, int] = {}
    for s in history:
        counts.setdefault(s.stage, s.num_tokens)
    schedule = viz.schedule_plot(kwargs["schedule"], kwargs["timesteps"], counts)
    before_after = (viz.tile([before] * len(last.canvas)), final) if before is not None else None
    status = f"done in {elapsed:.1f} s · {last.label} · seed {seed}{note}"
    return (final, viz.step_prediction(last, DISPLAY_SIZE), status, seed, before_after, gallery,
            viz.reveal_order_map(history), viz.confidence_map(history, critic=has_critic), schedule, animation, files)


def _has_critic(pipe: MusePipeline, use_critic: bool) -> bool:
    return use_critic and (pipe.base_critic is not None or bool(getattr(pipe.base_model.config, "self_critic", False)))


@gpu
@_user_errors
def generate(prompt: str, negative_prompt: Optional[str] = None, timesteps: int = 12, cond_scale: float = 3.0,
             temperature: float = 1.0, critic_noise_scale: float = 1.0, topk_filter_thres: float = 0.9,
             use_critic: bool = True, schedule: str = "cosine", superres: bool = True, seed: int = 0,
             randomize_seed: bool = True, num_images: int = 1, previews: bool = True) -> Iterator[tuple]:
    """Text to image, streamed: one update per decoding step of each stage."""
    prompt = _prompt(prompt)
    kwargs, seed, previews = _settings(negative_prompt, timesteps, cond_scale, temperature, critic_noise_scale,
                                       topk_filter_thres, use_critic, schedule, seed, randomize_seed,
                                       num_images, previews, superres)
    pipe = get_pipeline()
    steps = pipe.stream(prompt, previews=previews, **kwargs)
    yield from _stream(steps, seed=seed, kwargs=kwargs, has_critic=_has_critic(pipe, kwargs["use_critic"]),
                       note=_truncation_note(pipe, prompt, kwargs["negative_prompt"]))


@gpu
@_user_errors
def inpaint(image: Any, prompt: str, negative_prompt: Optional[str] = None, timesteps: int = 12,
            cond_scale: float = 3.0, temperature: float = 1.0, critic_noise_scale: float = 1.0,
            topk_filter_thres: float = 0.9, use_critic: bool = True, schedule: str = "cosine",
            superres: bool = True, seed: int = 0, randomize_seed: bool = True, num_images: int = 1,
            previews: bool = True) -> Iterator[tuple]:
    """Regenerate the painted part of an image (editor value: background + mask layers), streamed."""
    rgb, mask = editor_to_image_and_mask(image)
    prompt = _prompt(prompt)
    kwargs, seed, previews = _settings(negative_prompt, timesteps, cond_scale, temperature, critic_noise_scale,
                                       topk_filter_thres, use_critic, schedule, seed, randomize_seed,
                                       num_images, previews, superres)
    pipe = get_pipeline()
    size = pipe.config.superres_size if kwargs["superres"] and pipe.superres_model is not None \
        else pipe.config.base_size
    before = viz.upscale(square(rgb, size), DISPLAY_SIZE)
    steps = pipe.stream_inpaint(rgb, mask, prompt, previews=previews, **kwargs)
    yield from _stream(steps, seed=seed, kwargs=kwargs, has_critic=_has_critic(pipe, kwargs["use_critic"]),
                       before=before, note=_truncation_note(pipe, prompt, kwargs["negative_prompt"]))


@gpu
@_user_errors
def superres(image: Any, prompt: str, negative_prompt: Optional[str] = None, timesteps: int = 12,
             cond_scale: float = 3.0, temperature: float = 1.0, critic_noise_scale: float = 1.0,
             topk_filter_thres: float = 0.9, use_critic: bool = True, schedule: str = "cosine", seed: int = 0,
             randomize_seed: bool = True, num_images: int = 1, previews: bool = True) -> Iterator[tuple]:
    """The super-res stage alone, conditioned on a low-resolution image and a prompt, streamed."""
    if image is None:
        raise UserError("Upload a low-resolution image first.", title="No image")
    if not isinstance(image, Image.Image):
        raise UserError("The image could not be read.", title="Not an image")
    prompt = _prompt(prompt)
    kwargs, seed, previews = _settings(negative_prompt, timesteps, cond_scale, temperature, critic_noise_scale,
                                       topk_filter_thres, use_critic, schedule, seed, randomize_seed,
                                       num_images, previews)
    kwargs.pop("superres")
    pipe = get_pipeline()
    if pipe.superres_model is None:
        raise UserError("This model has no super-res stage.")
    rgb = to_rgb(image)
    before = viz.upscale(square(rgb, pipe.config.base_size), DISPLAY_SIZE)
    steps = pipe.stream_superres(rgb, prompt, previews=previews, **kwargs)
    yield from _stream(steps, seed=seed, kwargs={**kwargs, "superres": True},
                       has_critic=_has_critic(pipe, kwargs["use_critic"]), before=before,
                       note=_truncation_note(pipe, prompt, kwargs["negative_prompt"]))


def schedule_preview(schedule: str, timesteps: Any, superres: Any = True) -> Any:
    """The schedule plot for the current sliders (before any run)."""
    try:
        steps = _number("timesteps", timesteps, *TIMESTEPS, integer=True)
        if schedule not in SCHEDULES:
            return gr.skip()
        return viz.schedule_plot(schedule, steps, _token_counts(_flag("superres", superres)))
    except gr.Error:
        return gr.skip()


# ----- the page ------------------------------------------------------------------------------

def build_demo() -> gr.Blocks:
    """The Blocks app, its queue configured (one worker for decoding; a bounded line)."""
    d = _ui_defaults()
    with gr.Blocks(title="muse · MaskGIT playground", delete_cache=(3600, 3600)) as demo:
        gr.Markdown("# muse · MaskGIT playground\nType a prompt and watch the image appear token by token: "
                    "every decoding step of the base (32 px) and super-res (64 px) stages is drawn as it is computed.")
        with gr.Row(equal_height=False):
            with gr.Column(scale=5, min_width=340):
                with gr.Tabs():
                    with gr.Tab("Text to image", id="generate"):
                        prompt = gr.Textbox(label="Prompt", placeholder="grinning face", autofocus=True,
                                            elem_id="prompt", max_length=MAX_PROMPT_CHARS)
                        generate_btn = gr.Button("Generate", variant="primary", elem_id="generate")
                        gr.Examples([[text] for _, text in EXAMPLES], inputs=[prompt],
                                    example_labels=[f"{emoji} {text}" for emoji, text in EXAMPLES],
                                    label="Examples (emoji the model was trained on)")
                    with gr.Tab("Inpaint", id="inpaint"):
                        editor = MaskEditor(label="Image: paint over the part to regenerate", type="pil",
                                            image_mode="RGBA", sources=["upload", "clipboard"], height=360,
                                            brush=gr.Brush(colors=["#ff2d7a"], color_mode="fixed"),
                                            layers=False, transforms=(), elem_id="editor")
                        inpaint_prompt = gr.Textbox(label="Prompt for the painted part", placeholder="red heart",
                                                    elem_id="inpaint_prompt", max_length=MAX_PROMPT_CHARS)
                        inpaint_btn = gr.Button("Inpaint", variant="primary", elem_id="inpaint")
                    with gr.Tab("Super-res", id="superres"):
                        low_res = ImageInput(label="Low-resolution image (any size; seen at 32 px)", type="pil",
                                             image_mode=None, sources=["upload", "clipboard"], height=300,
                                             elem_id="low_res")
                        sr_prompt = gr.Textbox(label="Prompt", placeholder="cat face", elem_id="sr_prompt",
                                               max_length=MAX_PROMPT_CHARS)
                        sr_btn = gr.Button("Upscale to 64 px", variant="primary", elem_id="superres")
                stop_btn = gr.Button("Stop", variant="stop", elem_id="stop")
                with gr.Accordion("Advanced settings", open=False):
                    negative_prompt = gr.Textbox(value="", label="Negative prompt", placeholder="(none)",
                                                 max_length=MAX_PROMPT_CHARS)
                    with gr.Row():
                        seed = Number(label="Seed", value=0, precision=0, minimum=0, maximum=SEED_MAX, elem_id="seed")
                        randomize_seed = gr.Checkbox(label="Randomize seed", value=True)
                    timesteps = Slider(*TIMESTEPS, value=d["timesteps"], step=1, label="Timesteps",
                                       info="decoding steps per stage", elem_id="timesteps")
                    cond_scale = Slider(*COND_SCALE, value=d["cond_scale"], step=0.1, label="Guidance (cond_scale)")
                    temperature = Slider(*TEMPERATURE, value=d["temperature"], step=0.05, label="Temperature")
                    # The noise perturbs the critic's scores: without the critic it has nothing to act on.
                    critic_noise_scale = Slider(*CRITIC_NOISE, value=d["critic_noise_scale"], step=0.05,
                                                label="Critic noise", info=CRITIC_NOISE_INFO,
                                                interactive=bool(d["use_critic"]), elem_id="critic_noise")
                    topk_filter_thres = Slider(*TOPK, value=d["topk_filter_thres"], step=0.01,
                                               label="Top-k threshold", info="0.9 keeps the top 10 % of codes")
                    schedule = Dropdown(list(SCHEDULES), value=d["schedule"], label="Schedule")
                    with gr.Row():
                        use_critic = gr.Checkbox(label="Use the token critic", value=d["use_critic"], elem_id="use_critic")
                        superres_box = gr.Checkbox(label="Super-res stage (64 px)", value=d["superres"])
                    with gr.Row():
                        num_images = Slider(*NUM_IMAGES, value=1, step=1, label="Number of images")
                        previews = gr.Checkbox(label="Previews (off = faster)", value=True, elem_id="previews")
            with gr.Column(scale=6, min_width=340):
                status = gr.Textbox(label="Step", interactive=False, elem_id="status",
                                    placeholder="waiting for a prompt")
                with gr.Row():
                    canvas = gr.Image(label="Canvas", format="png", interactive=False, elem_id="canvas", height=300,
                                      buttons=["download", "fullscreen"])
                    prediction = gr.Image(label="Full prediction", format="png", interactive=False,
                                          elem_id="prediction", height=300, buttons=["fullscreen"])
                gr.Markdown("Canvas: grey tokens are still masked, yellow outlines mark the tokens fixed at this "
                            "step. Full prediction: the image with every still-masked token set to the model's current guess.",
                            elem_classes="caption")
                with gr.Row():
                    before_after = gr.ImageSlider(label="Before / after", format="png", interactive=False,
                                                  elem_id="before_after", max_height=240)
                    files = gr.File(label="Download: final PNG and decoding GIF", file_count="multiple",
                                    interactive=False, elem_id="files")
        with gr.Accordion("Pictures of the decoding", open=True):
            timeline = gr.Gallery(label="Timeline: every step", format="png", columns=8, elem_id="timeline",
                                  interactive=False, object_fit="contain", height=240)
            with gr.Row():
                # The figures carry their own titles; a floating label would cover them.
                reveal_map = gr.Image(label="Reveal order", show_label=False, format="png", interactive=False,
                                      elem_id="reveal_map")
                heat_map = gr.Image(label="Confidence when fixed", show_label=False, format="png", interactive=False,
                                    elem_id="heat_map")
            with gr.Row():
                schedule_plot = gr.Image(label="Schedule", show_label=False, format="png", interactive=False,
                                         elem_id="schedule_plot")
                animation = gr.Image(label="Decoding animation (GIF)", interactive=False, elem_id="animation",
                                     height=300)
        with gr.Accordion("How MaskGIT decodes, and what each control does", open=False):
            gr.Markdown(EXPLANATION)

        outputs = [canvas, prediction, status, seed, before_after, timeline, reveal_map, heat_map, schedule_plot,
                   animation, files]
        settings = [negative_prompt, timesteps, cond_scale, temperature, critic_noise_scale, topk_filter_thres,
                    use_critic, schedule]
        tail = [seed, randomize_seed, num_images, previews]
        heavy = dict(outputs=outputs, concurrency_limit=1, concurrency_id="decode", show_progress="full",
                     show_progress_on=[canvas, status])
        gen_event = gr.on([generate_btn.click, prompt.submit], generate,
                          inputs=[prompt, *settings, superres_box, *tail], api_name="generate", **heavy)
        inpaint_event = gr.on([inpaint_btn.click, inpaint_prompt.submit], inpaint,
                              inputs=[editor, inpaint_prompt, *settings, superres_box, *tail],
                              api_name="inpaint", **heavy)
        sr_event = gr.on([sr_btn.click, sr_prompt.submit], superres, inputs=[low_res, sr_prompt, *settings, *tail],
                         api_name="superres", **heavy)
        stop_btn.click(None, cancels=[gen_event, inpaint_event, sr_event], queue=False, api_visibility="private")
        use_critic.change(lambda on: gr.update(interactive=bool(on)), inputs=[use_critic],
                          outputs=[critic_noise_scale], queue=False, show_progress="hidden", api_visibility="private")
        gr.on([demo.load, schedule.change, timesteps.release, superres_box.change], schedule_preview,
              inputs=[schedule, timesteps, superres_box], outputs=[schedule_plot], queue=False,
              show_progress="hidden", api_visibility="private")
    demo.queue(max_size=QUEUE_SIZE, default_concurrency_limit=1)
    return demo


demo = build_demo()  # built at import (cheap, no model); Spaces and `gradio app.py` look for `demo`


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per HTTP request otherwise
    demo.launch(server_name=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
                server_port=int(os.environ.get("GRADIO_SERVER_PORT", "7860")),
                theme=_theme(), css=CSS, show_error=False, max_file_size=MAX_FILE_SIZE,
                footer_links=["api", "gradio"])


if __name__ == "__main__":
    main()
