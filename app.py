"""muse playground: watch MaskGIT decode, step by step, in the browser (Gradio 6).

    python app.py    # http://127.0.0.1:7860 (GRADIO_SERVER_NAME / GRADIO_SERVER_PORT override)

The model comes from MUSE_WEIGHTS (a folder or a Hub repo id; unset = the shipped `weights/`). It
loads (and warms up) in the background while `main()` starts the server, never at a plain import
except on ZeroGPU, where it loads at import; MUSE_COMPILE=1 compiles its transformers (meant for a
GPU; ignored on ZeroGPU). Four streamed endpoints share one worker: `/generate` (text to image),
`/inpaint` and `/superres`, with parameters named like `MusePipeline.stream`, and `/compare` (side by
side: the same prompt and seed under two columns of settings, named like the Python API's with a `_a`
/ `_b` suffix); `/text_to_image` returns one image without streaming and is the MCP tool (the MCP
server is on unless MUSE_MCP=0). Every step decodes on one thread of its own (`muse.compute`), with
torch on one core fewer than the machine has (MUSE_THREADS), and at most MUSE_STREAM_FPS (20) updates a
second go out: the steps in between are coalesced into the next. The step slider and Play replay a run
from every step it produced (`muse.playground.REPLAYS`). This file is the page only: its components,
upload decoding and layout, with Gradio's public APIs only. Checking a request and streaming it as page
updates keyed by output name is `muse.playground`'s; every setting's label, help, range and default comes
from the one schema (`muse.settings`). Problems come back as `gr.Error` messages; server-side failures are logged,
never shown as a stack trace.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import importlib.util
import inspect
import io
import logging
import os
import threading
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

import gradio as gr
from gradio.data_classes import ImageData
from PIL import Image

from muse import images, playground
from muse.compute import COMPUTE, server_threads
from muse.playground import MAX_PROMPT_CHARS, OUTPUTS, PASSING
from muse.settings import shown

# Hugging Face Spaces with ZeroGPU: the decoding handlers run on a GPU that is requested per call, for at
# most GPU_SECONDS; inputs are checked before one is requested (each event's validator), the model is loaded
# at start, and torch.compile stays off. Elsewhere `gpu` is a no-op.
GPU_SECONDS = int(os.environ.get("MUSE_GPU_SECONDS", "60"))
try:
    import spaces

    ZERO_GPU = True
    gpu: Callable[[Callable], Callable] = spaces.GPU(duration=GPU_SECONDS)
except ImportError:
    ZERO_GPU = False

    def gpu(fn: Callable) -> Callable:
        return fn

log = logging.getLogger("muse.app")

MAX_UPLOAD_PIXELS = 64_000_000  # larger files are refused before they are decoded
WORK_SIZE = 512  # uploads are reduced to this many pixels on the long side (the model sees 32-64 px)
QUEUE_SIZE = int(os.environ.get("MUSE_QUEUE_SIZE", "16"))
MAX_FILE_SIZE = "50mb"


def _stream_fps() -> float:
    """MUSE_STREAM_FPS (default 20), or a one-line message for a value that is not a number >= 0."""
    raw = os.environ.get("MUSE_STREAM_FPS", "20").strip()
    try:
        fps = float(raw)
    except ValueError:
        fps = -1.0
    if not 0 <= fps < float("inf"):
        raise SystemExit(f"MUSE_STREAM_FPS must be a number of updates a second, 0 for every step; got {raw!r}.")
    return fps


# The stream's pace: at most this many step updates a second go to the page (MUSE_STREAM_FPS=0: every
# step). A step of the shipped model takes 15-30 ms on a 2-core CPU and less on a GPU, sooner than a page
# takes in a Gradio update (about 30 ms of the browser's CPU on such a machine; 16.7 ms a frame on a 60 Hz
# screen). The steps in between are coalesced into the next update (`playground.stream_updates`); the
# status says how many went out, and the step slider and the timeline keep every step.
STREAM_FPS = _stream_fps()
FRAME_S = 1 / STREAM_FPS if STREAM_FPS > 0 else 0.0

EXAMPLES = [("😀", "grinning face"), ("❤️", "red heart"), ("👍", "thumbs up sign"), ("🚀", "rocket"),
            ("💩", "pile of poo"), ("🐱", "cat face"), ("😎", "smiling face with sunglasses"), ("🔥", "fire")]
# For aMUSEd (a general text-to-image model): prompts of its kind instead of emoji names.
AMUSED_EXAMPLES = ["a watercolor painting of a fox in the snow", "a red vintage car on a country road, photo",
                   "a bowl of ramen, studio lighting", "a lighthouse at sunset, oil painting",
                   "an astronaut riding a horse on the moon", "a cozy cabin in a pine forest at night"]

# The served model as the page shows it (its stages, sizes, critic and own settings), read from its
# configs at import: no model is loaded for it.
PAGE = playground.page_model()


def _controls_table(model: playground.PageModel) -> str:
    """What each control of the page does, in markdown, from the settings' help texts."""
    rows = [("Negative prompt", playground.NEGATIVE_PROMPT_HELP)]
    rows += [(playground.control(name).label, playground.control(name).help) for name in model.controls()]
    return "| control | what it does |\n|---|---|\n" + "\n".join(f"| **{label}** | {text} |" for label, text in rows)


def _explanation(model: playground.PageModel) -> str:
    """How decoding works and what each control does, for the served model's stages and sizes."""
    s = model.summary
    grids = []
    for stage in s.stage_names(True):
        side, kind = s.image_size(stage) // s.downsample, ""
        if model.superres:
            kind = "super-res " if stage == "superres" else "base "
        grids.append(f"{side}x{side} tokens for the {s.image_size(stage)} px {kind}image")
    vq = "aMUSEd's VQ autoencoder" if model.family == "amused" else "a small VQ autoencoder"
    text = f"""
### How MaskGIT decodes
An image is a grid of **tokens** (codes of {vq}: {', '.join(grids)}). Decoding starts with every
token **masked** (grey on the canvas). At each step the transformer predicts *all* masked tokens at once (the
**prediction** panel), the sampler **keeps** the ones it is surest of (outlined in yellow) and masks the rest
again; the **schedule** decides how many stay masked after each step, and the last step fixes them all."""
    if model.superres:
        text += (f" The super-res stage then repeats this at {s.image_size('superres')} px, conditioned on the "
                 "base image's tokens.")
    text += "\n\n" + _controls_table(model) + "\n\n"
    if model.family == "amused":
        text += ("The step-by-step pictures colour each token with one colour per code (a palette fitted once "
                 "from the real decoder), so streaming every step costs almost nothing at 256 or 512 px; the "
                 "final image always comes from the full decoder.\n\n")
    else:
        text += ("The step-by-step pictures come from a tiny *preview decoder* distilled from the tokenizer's "
                 "decoder (about 15 times cheaper, so streaming every step costs little); the final image always "
                 "comes from the full decoder.\n\n")
    critic = " the critic's probability that it is right (with the critic on)," if model.critic else ""
    text += ("The reveal-order map shows the step that fixed each token. The confidence figure shows, for each "
             f"token at the step that fixed it, the model's own probability of the token (0-1),{critic} and the "
             "random noise the sampler added to its keep score before ranking, with how many choices that noise "
             "made.\n")
    return text


EXPLANATION = _explanation(PAGE)


def _tour(model: playground.PageModel) -> str:
    critic = ", or, with the critic on, the critic's probability that it is right" if model.critic else ""
    return f"""**Reading the pictures.** The *canvas* is the image after the step shown: grey tokens are still masked
and yellow outlines mark the tokens fixed at that step. The *full prediction* fills every masked token with the model's
current guess. *Fixed at this step* colours those tokens by what ranked them: the model's probability of the
token{critic}; the line below says how many of them the sampler's random noise chose instead. Drag the step
slider or press Play to go back through the run; the figures further down sum up the whole run."""


TOUR = _tour(PAGE)

CSS = """
#canvas img, #prediction img, #timeline img, #before_after img, #step_tokens img, #canvas_a img, #canvas_b img,
#difference img { image-rendering: pixelated; }
/* the streamed steps come at half the display size: drawn to fill their frame, pixel for pixel */
#canvas img, #prediction img { width: 100%; height: 100%; object-fit: contain; }
.tour p { font-size: 0.9em; }
#status textarea { font-family: ui-monospace, monospace; }
.caption p { font-size: 0.85em; opacity: 0.8; margin: 0; }
"""


def _theme() -> gr.themes.Base:
    # System fonts: the page must not fetch web fonts (it runs offline and in CI).
    return gr.themes.Soft(primary_hue="orange", secondary_hue="amber",
                          font=["ui-sans-serif", "system-ui", "sans-serif"],
                          font_mono=["ui-monospace", "monospace"])


# ----- errors and uploads --------------------------------------------------------------------------

class UserError(gr.Error):
    """A message about the user's input: shown on the page (or to the API client), not logged as a
    server fault with a traceback."""

    def __init__(self, message: str, title: str = "Error") -> None:
        super().__init__(message, title=title, print_exception=False)


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
    """An upload as the event sends it (its file data as a dict: the events take their values unprocessed),
    a PIL image (Python callers), raw bytes or a data: URL -> a checked PIL image (or None)."""
    if file is None or isinstance(file, Image.Image):  # a PIL image is already decoded (a Python caller's)
        return file
    if isinstance(file, (bytes, bytearray, memoryview)):
        return open_image(file, what)
    if isinstance(file, dict):
        path, url = file.get("path"), file.get("url")
    else:
        path, url = getattr(file, "path", None), getattr(file, "url", None)
    if isinstance(path, str) and path:
        return open_image(path, what)
    if isinstance(url, str) and url.startswith("data:") and "," in url:
        try:
            return open_image(base64.b64decode(url.split(",", 1)[1]), what)
        except (ValueError, TypeError):
            raise UserError(f"The {what} is not valid base64 image data.") from None
    raise UserError(f"Expected the {what} as an uploaded file (from the API: handle_file(path)); got {shown(file)}.",
                    title="Not an image")


EDITOR_SHAPE = ("the image and mask as {'background': handle_file(image), 'layers': [handle_file(mask)], "
                "'composite': None}")


def _open_editor(value: Any, editor: Optional[gr.ImageEditor]) -> Optional[dict[str, Any]]:
    """The image editor's value as the event sends it -> {"background", "layers", "composite"} of checked PIL
    images (the layers keep their alpha: it is the painted mask). The browser sends the canvas ahead of the
    event, as blobs kept by the editor under the value's id; the editor's own preprocess reads them."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise UserError(f"Expected {EDITOR_SHAPE}; got {shown(value)}.", title="Not an image")
    if value.get("id") is not None and editor is not None:
        try:
            value = editor.preprocess(editor.data_model.model_validate(value))
        except gr.Error:
            raise
        except Exception:  # a blob the browser sent that PIL cannot read
            raise UserError("The image in the editor is not a readable image; upload it again.",
                            title="Not an image") from None
    layers = value.get("layers") or []
    if not isinstance(layers, (list, tuple)):
        raise UserError(f"Expected {EDITOR_SHAPE}; the layers are {shown(layers)}.", title="Not an image")
    background = _open_upload(value.get("background"), "image")
    return {"background": background,
            "layers": [im for im in (_open_upload(f, "mask layer") for f in layers) if im is not None],
            "composite": _open_upload(value.get("composite"), "image") if background is None else None}


# ----- the endpoints ---------------------------------------------------------------------------------

PARAMETER_HELP = {
    "prompt": ("what to draw, e.g. “a watercolor painting of a fox in the snow”" if PAGE.family == "amused" else
               "what to draw, e.g. “red heart” or “grinning face” (the shipped model knows emoji names)"),
    "negative_prompt": playground.NEGATIVE_PROMPT_HELP}


def parameter_help(name: str, leading_help: Optional[dict[str, str]] = None) -> str:
    """One API parameter's description: the schema's help and the playground's range (a `_a` / `_b`
    suffix names a side-by-side column)."""
    if name in (leading_help or {}):
        return (leading_help or {})[name]
    if name in PARAMETER_HELP:
        return PARAMETER_HELP[name]
    base, column = (name[:-2], name[-1].upper()) if name[-2:] in ("_a", "_b") else (name, "")
    setting = playground.control(base)
    text = setting.help or setting.label
    if setting.kind in (int, float):
        lo, hi = playground.limits(base)
        text += f" ({lo} to {hi})"
    elif setting.choices:
        text += " (one of " + ", ".join(map(str, setting.choices)) + ")"
    return text + (f"; column {column}" if column else "")


def _with_args(doc: str, signature: inspect.Signature, leading_help: Optional[dict[str, str]] = None) -> str:
    """`doc` with an `Args:` section describing every parameter (Gradio's API page and MCP read it)."""
    lines = [f"    {name}: {parameter_help(name, leading_help)}" for name in signature.parameters]
    return (doc or "").strip() + "\n\nArgs:\n" + "\n".join(lines) + "\n"


def _problem(err: Exception) -> UserError:
    """A failure inside a request as the message the user sees (unexpected ones logged, never shown)."""
    if isinstance(err, ValueError):  # the playground's messages, and the library's validation (WeightsError too)
        return UserError(str(err), title=getattr(err, "title", "Error"))
    log.exception("request failed")
    return UserError(f"Something went wrong on the server ({type(err).__name__}); the server log has the details. "
                     "Try again, perhaps with other settings.", title="Server error")


def _endpoint(run: Callable[..., Iterator[playground.Update]], *leading: str, superres: bool = True,
              signature: Optional[inspect.Signature] = None, outputs: tuple[str, ...] = OUTPUTS,
              image: Optional[Callable[[Any], Any]] = None,
              leading_help: Optional[dict[str, str]] = None) -> Callable[..., Iterator[tuple]]:
    """The handler of a playground request `run(*leading, settings)`: with an explicit signature (API
    clients see the parameters by name, defaulting to the page's values; `signature` overrides the
    request endpoints' one) and an `Args:` docstring, `image` decoding the upload the event sends as it
    came, one value per output in `outputs` order (a name the update leaves out keeps its value:
    `_Stream`), and problems as gr.Error messages."""
    signature = signature or playground.endpoint_signature(leading, superres)

    @functools.wraps(run, assigned=("__module__", "__name__", "__qualname__"))
    def handler(*args: Any, **kwargs: Any) -> Iterator[tuple]:
        values = _bound(signature, args, kwargs)
        try:
            if image is not None:
                values["image"] = image(values["image"])
            stream = _Stream()
            # every step decodes on the compute thread (torch's fast path in a server: see muse.compute)
            for update in COMPUTE.iterate(run(*(values.pop(name) for name in leading), values, frame_s=FRAME_S)):
                yield stream.values(update, outputs)
        except gr.Error:
            raise
        except Exception as err:
            raise _problem(err) from None

    handler.__signature__ = signature  # type: ignore[attr-defined]  (Gradio names the API parameters from it)
    handler.__doc__ = _with_args(run.__doc__ or "", signature, leading_help)
    return handler


class _Stream:
    """One streamed request's updates as Gradio takes them (`values`). An output an update leaves out keeps
    its value: when this stream last sent it a value that costs nothing to send again (None, an empty list,
    a number, a text, or a picture sent inline, which is encoded once), that value goes again; otherwise it
    is skipped. Gradio sends a streamed output as its difference from the last one, so a value sent again
    travels as nothing, whereas each `gr.skip()` makes Gradio rebuild the component and its whole config
    (JSON schema included): about 5 ms of server time per output, 40 ms per update for the outputs a step
    leaves alone, more than the model's step (15-35 ms on a 2-core CPU)."""

    def __init__(self) -> None:
        self.ranges: dict[str, int] = {}  # the slider ranges sent (see `_shown`)
        self.again: dict[str, Any] = {}  # the cheap values sent, by output name

    def values(self, update: playground.Update, outputs: tuple[str, ...]) -> tuple:
        inline = bool(update.get(PASSING))
        out = []
        for name in outputs:
            if name in update:
                value = _shown(update[name], self.ranges, name, inline)
                if _cheap(value):
                    self.again[name] = value
                else:
                    self.again.pop(name, None)
            else:
                value = self.again.get(name, gr.skip())
            out.append(value)
        return tuple(out)


def _cheap(value: Any) -> bool:
    """Whether sending `value` again costs nothing worth counting (see `_Stream`). A text may also name a
    file (the decoding GIF), but paths come only in a run's last two updates, which carry the same path
    anyway (Gradio hashes the file again and keeps its first copy)."""
    return (value is None or isinstance(value, (bool, int, float, str, InlinePicture))  # a picture encoded once
            or (isinstance(value, (list, tuple)) and not value))


def _bound(signature: inspect.Signature, args: tuple, kwargs: dict[str, Any]) -> dict[str, Any]:
    bound = signature.bind(*args, **kwargs)
    bound.apply_defaults()
    return dict(bound.arguments)


def _validator(check: Callable[..., Any], *leading: str, signature: inspect.Signature) -> Callable[..., list]:
    """An event's validator (Gradio runs it before the event is queued, so on ZeroGPU before a GPU is
    requested): `check(*leading, settings)` raises the request's first problem, shown at its parameter."""
    names = list(signature.parameters)

    def validate(*args: Any) -> list[dict[str, Any]]:
        values = _bound(signature, args, {})
        try:
            check(*(values.pop(name) for name in leading), values)
        except ValueError as err:
            message = str(err)
            at = next((n for n in names if message.startswith(n + " ")), leading[-1])
            return [gr.validate(n != at, message if n == at else "") for n in names]
        return [gr.validate(True, "") for _ in names]

    return validate


def _check_upload(image: Any, prompt: Any, values: dict[str, Any]) -> None:
    if image is None:
        raise playground.PlaygroundError("Upload an image first.", title="No image")
    playground.check_request(prompt, values)


IMAGE_HELP = {"superres": "the low-resolution image (any size, seen at the base stage's size): an uploaded file, "
                          "from the API handle_file(path)",
              "inpaint": f"{EDITOR_SHAPE}; the mask is white (or painted, with alpha) where to regenerate"}
_PAGE: dict[str, gr.Component] = {}  # components a handler needs (the editor keeps the browser's blobs)

# Each endpoint takes the served model's settings (`PageModel.request_settings`): a model without a critic
# or a super-res stage takes none of their settings, aMUSEd takes its sampler preset and micro-conditioning.
generate = gpu(_endpoint(playground.generate, "prompt", signature=playground.endpoint_signature(("prompt",),
                                                                                                  model=PAGE)))
inpaint = gpu(_endpoint(playground.inpaint, "image", "prompt", image=lambda v: _open_editor(v, _PAGE.get("editor")),
                        leading_help={"image": IMAGE_HELP["inpaint"]},
                        signature=playground.endpoint_signature(("image", "prompt"), model=PAGE)))
# (served only for a model with a super-res stage)
superres = gpu(_endpoint(playground.superres, "image", "prompt", superres=False,
                         image=lambda v: _open_upload(v, "image"), leading_help={"image": IMAGE_HELP["superres"]},
                         signature=playground.endpoint_signature(("image", "prompt"), superres=False, model=PAGE)))
compare = gpu(_endpoint(playground.compare, "prompt", signature=playground.compare_signature(PAGE),
                        outputs=playground.COMPARE_OUTPUTS))

_TOOL = playground.page_defaults()  # the weights' tuned defaults


def _tool_request(prompt: Any, seed: Any = 0, steps: Any = _TOOL["timesteps"],
                  guidance: Any = _TOOL["cond_scale"]) -> playground.Request:
    values = {**_TOOL, "seed": seed, "randomize_seed": False, "timesteps": steps, "cond_scale": guidance,
              "num_images": 1, "previews": False}
    return playground.check_request(prompt, values)


@gpu
def text_to_image(prompt: str, seed: int = 0, steps: int = _TOOL["timesteps"],
                  guidance: float = _TOOL["cond_scale"]) -> Image.Image:
    """Draw a small emoji-like picture from a text prompt with the muse model: MaskGIT decoding, a 32 px
    base stage then a 64 px super-res stage, on this server. Quick (well under a second on a CPU).

    Args:
        prompt: what to draw, e.g. "red heart", "grinning face" or "rocket" (the shipped model knows emoji names)
        seed: the random seed, a whole number from 0 to 4294967295; the same seed and settings give the same image
        steps: decoding steps of each stage, 1 to 64; more are slower and often cleaner
        guidance: classifier-free guidance scale (cond_scale), 0 to 10; higher follows the prompt more closely
    Returns:
        The image (64x64 PNG with the shipped model).
    """
    try:
        request = _tool_request(prompt, seed, steps, guidance)
        return COMPUTE.call(lambda: playground.MODEL.get()(request.prompt, **request.kwargs)[0])
    except gr.Error:
        raise
    except Exception as err:
        raise _problem(err) from None


if PAGE.family == "amused":  # the tool's description (Gradio's API page and MCP read it) for the model served
    text_to_image.__doc__ = f"""Draw a picture from a text prompt with aMUSEd (a public MUSE model) on this server:
    MaskGIT decoding, one {PAGE.output_size()} px stage, aMUSEd's sampler rules and micro-conditioning defaults.

    Args:
        prompt: what to draw, e.g. "a watercolor painting of a fox in the snow"
        seed: the random seed, a whole number from 0 to 4294967295; the same seed and settings give the same image
        steps: decoding steps, 1 to 64; more are slower and often cleaner
        guidance: classifier-free guidance scale (cond_scale), 0 to 10; higher follows the prompt more closely
    Returns:
        The image ({PAGE.output_size()}x{PAGE.output_size()} PNG).
    """


VALIDATORS = {
    "generate": _validator(playground.check_request, "prompt",
                           signature=playground.endpoint_signature(("prompt",), model=PAGE)),
    "inpaint": _validator(_check_upload, "image", "prompt",
                          signature=playground.endpoint_signature(("image", "prompt"), model=PAGE)),
    "superres": _validator(_check_upload, "image", "prompt",
                           signature=playground.endpoint_signature(("image", "prompt"), superres=False, model=PAGE)),
    "compare": _validator(playground.check_compare, "prompt", signature=playground.compare_signature(PAGE)),
    "text_to_image": _validator(lambda prompt, values: _tool_request(prompt, **values), "prompt",
                                signature=inspect.signature(_tool_request))}


def _png(image: Image.Image) -> bytes:
    # zlib's fastest level: a third of the default's time for about 17 % more bytes (7 KB a step picture,
    # 137 KB against 117 KB for the timeline), which cost nothing on the way to a page on this machine
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


class InlinePicture:
    """A picture to send inside the update, as a PNG data URL (see `FrameImage`); `image` is the picture."""

    def __init__(self, image: Image.Image) -> None:
        self.image = image
        data = _png(image)
        self.size = len(data)
        self.url = "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def _cached_png(image: Image.Image, cache_dir: str) -> str:
    """`image` as a PNG file in Gradio's cache, in a folder named by its content, as Gradio names its own.
    Written once, whole (a temporary file renamed): a run's result is sent twice (`stream_updates`), and
    Gradio's own saving writes the file again in place, which a browser loading it at that moment reads
    cut short."""
    data = _png(image)
    path = Path(cache_dir) / hashlib.sha256(data).hexdigest() / "image.png"
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        part = path.with_name(f".{threading.get_ident()}.part")
        part.write_bytes(data)
        os.replace(part, path)
    return str(path)


class FrameImage(gr.Image):
    """gr.Image (the same page component) that also takes `InlinePicture`s. A streamed step's pictures
    (about 6 KB each, replaced at the next step) travel in the update itself instead of as a cached file
    that the browser fetches in a request of its own: three files per step, each costing the server a
    file write, its hash and an HTTP response (a run fetched 100 files, now 8). Results stay files
    (downloads, API clients), saved once by `_cached_png`. The request's schedule plot also comes inline,
    with the first step."""

    is_template = True  # drawn by gr.Image's own front end

    def postprocess(self, value: Any) -> Any:
        if isinstance(value, InlinePicture):
            return ImageData(url=value.url, size=value.size, orig_name="step.png", mime_type="image/png")
        if isinstance(value, Image.Image):
            value = _cached_png(value, self.GRADIO_CACHE)
        return super().postprocess(value)


class FrameSlider(gr.ImageSlider):
    """gr.ImageSlider whose pictures are saved once (`_cached_png`), like `FrameImage`'s results."""

    is_template = True  # drawn by gr.ImageSlider's own front end

    def postprocess(self, value: Any) -> Any:
        if isinstance(value, (tuple, list)):
            value = tuple(_cached_png(v, self.GRADIO_CACHE) if isinstance(v, Image.Image) else v for v in value)
        return super().postprocess(value)


def _shown(value: Any, ranges: Optional[dict[str, int]] = None, name: str = "", inline: bool = False) -> Any:
    """An update's value as Gradio takes it: the step slider's position and range as a slider update; a
    picture inline (`InlinePicture`) when `inline` (a passing frame of a run, or a replayed step).
    `ranges`: the ranges this stream already sent, by output name; a range is sent again only when it
    changes, because Gradio rebuilds a component's whole config (its JSON schema included) for each update
    of its properties, which cost more server time than the model's step."""
    if inline and isinstance(value, Image.Image):
        return InlinePicture(value)
    if isinstance(value, playground.StepSlider):
        maximum = max(2, value.maximum)  # a 1-step slider cannot be drawn
        if ranges is not None:
            if ranges.get(name) == maximum:
                return value.value
            ranges[name] = maximum
        return gr.update(value=value.value, maximum=maximum)
    return value


def _page_event(fn: Callable[..., Any], outputs: tuple[str, ...]) -> Callable[..., tuple]:
    """A quick page handler (replay, play, upload): its update as one value per name of `outputs`, its
    PlaygroundError as a message."""

    @functools.wraps(fn)
    def handler(*args: Any) -> Any:
        try:
            update = fn(*args)
        except playground.PlaygroundError as err:
            raise UserError(str(err), title=err.title) from None
        # a replayed step's pictures are passing frames too (the page's own events, not the API's)
        values = tuple(_shown(update[name], inline=True) if name in update else gr.skip() for name in outputs)
        return values[0] if len(values) == 1 else values  # Gradio takes one output's value bare

    return handler


def _play(key: Any, step: Any, playing: bool) -> dict[str, Any]:
    """One tick of the play button: the next step, and the timer stopped at the run's end."""
    if not playing:
        return {"timer": gr.Timer(active=False)}
    update, more = playground.play_next(key, step)
    if not more:
        update.update(timer=gr.Timer(active=False), playing=False, play=gr.Button(value=PLAY_LABEL))
    return update


def _toggle_play(key: Any, playing: bool, speed: Any) -> dict[str, Any]:
    """Start (from the shown step) or pause the replay at `speed` seconds per step."""
    if not playing:
        playground.replay(key, None)  # a clear message when there is no run to play
    seconds = playground.check_speed(speed)
    return {"playing": not playing, "timer": gr.Timer(value=seconds, active=not playing),
            "play": gr.Button(value=PAUSE_LABEL if not playing else PLAY_LABEL)}


def _set_speed(speed: Any) -> dict[str, Any]:
    return {"timer": gr.Timer(value=playground.check_speed(speed))}


PLAY_LABEL, PAUSE_LABEL = "▶ Play", "⏸ Pause"
PLAY_OUTPUTS = (*playground.STEP_OUTPUTS, "timer", "playing", "play")


MODEL_LOADING = "loading the model… type a prompt meanwhile: the first image waits for it"
MODEL_READY = "model ready: waiting for a prompt"


def _model_status() -> tuple[Any, Any]:
    """The status line's placeholder while no run has written it (the model loads while the server starts;
    a first request waits for it), and the timer that asks again until the model is ready or failed."""
    model = playground.MODEL
    if model.is_ready():
        return gr.update(placeholder=MODEL_READY), gr.Timer(active=False)
    if model.start_error is not None:
        return gr.update(placeholder=f"the model did not load: {model.start_error}"), gr.Timer(active=False)
    if not model.is_starting():  # nothing loads it before a request (no `main()`): the first one will
        return gr.update(placeholder="waiting for a prompt (the model loads with the first one)"), gr.Timer(active=False)
    return gr.update(placeholder=MODEL_LOADING), gr.skip()


def schedule_preview(schedule: Any, timesteps: Any, superres: Any = True) -> Any:
    """The schedule plot for the current settings (before any run); left alone while one is invalid."""
    plot = playground.schedule_preview(schedule, timesteps, superres)
    return gr.skip() if plot is None else plot


# ----- the page ------------------------------------------------------------------------------

def _control(name: str, value: Any, **layout: Any) -> gr.Component:
    """The input of one setting, from the schema: its label, help, step and starting value, and the
    playground's range."""
    setting = playground.control(name)
    common = dict(value=value, label=setting.label, info=setting.help, **layout)
    if setting.kind is bool:
        return gr.Checkbox(**common)
    if setting.choices:
        return gr.Dropdown(list(setting.choices), **common)
    lo, hi = playground.limits(name)
    if setting.step is None:  # the seed, aMUSEd's sizes and crops: any whole number in range
        return gr.Number(precision=0, minimum=lo, maximum=hi, **common)
    return gr.Slider(lo, hi, step=setting.step, **common)


def _header(model: playground.PageModel) -> str:
    """The page's title and what it serves: its stages and sizes, and for aMUSEd the weights' licence."""
    text = "# muse · MaskGIT playground\nType a prompt and watch the image appear token by token: " + model.describe()
    if model.family == "amused":
        source = playground.MODEL.source() or ""
        # a local folder by its name only: the page does not show the server's paths
        name = os.path.basename(os.path.normpath(source)) if os.path.isdir(source) else source
        text += (f"\n\nServing **aMUSEd** (`{name}`) through muse's sampler: its weights are under the "
                 f"{playground.AMUSED_LICENSE} licence, not muse's.")
    return text


def build_demo() -> gr.Blocks:
    """The Blocks app, its queue configured (one worker for decoding; a bounded line). The page follows the
    served model (`PAGE`): no super-res tab or switch without a super-res stage, no critic controls without
    a critic, aMUSEd's sampler preset and micro-conditioning where the model takes them, and every
    picture at the model's own size when it is larger than the usual display size."""
    d = playground.page_defaults(PAGE)
    amused = PAGE.family == "amused"
    frame = playground.display_size() + 4  # each picture's frame: the display size and a small margin
    with gr.Blocks(title="muse · MaskGIT playground", delete_cache=(3600, 3600)) as demo:
        gr.Markdown(_header(PAGE), elem_id="header")
        if PAGE.missing():
            gr.Markdown(f"*{PAGE.missing()}*", elem_id="model_note")
        with gr.Row(equal_height=False, elem_id="main"):
            with gr.Column(scale=5, min_width=340):
                with gr.Tabs():
                    with gr.Tab("Text to image", id="generate"):
                        prompt = gr.Textbox(label="Prompt", autofocus=True,
                                            placeholder="a watercolor fox" if amused else "grinning face", elem_id="prompt", max_length=MAX_PROMPT_CHARS)
                        generate_btn = gr.Button("Generate", variant="primary", elem_id="generate")
                        if amused:
                            gr.Examples([[text] for text in AMUSED_EXAMPLES], inputs=[prompt], label="Examples")
                        else:
                            gr.Examples([[text] for _, text in EXAMPLES], inputs=[prompt],
                                        example_labels=[f"{emoji} {text}" for emoji, text in EXAMPLES],
                                        label="Examples (emoji the model was trained on)")
                    with gr.Tab("Inpaint", id="inpaint"):
                        # Uploads become the square the model sees at EDIT_SIZE px, so the brush (sized
                        # in image pixels, adjustable in the editor's toolbar) is 1/8 of the width.
                        editor = gr.ImageEditor(label="Image: paint over the part to regenerate", type="pil",
                                            image_mode="RGBA", sources=["upload", "clipboard"], height=460,
                                            brush=gr.Brush(default_size=playground.BRUSH_RADIUS,
                                                           colors=["#ff2d7a"], color_mode="fixed"),
                                            layers=False, transforms=(), elem_id="editor",
                                            canvas_size=(playground.EDIT_SIZE, playground.EDIT_SIZE), fixed_canvas=True)
                        _PAGE["editor"] = editor
                        inpaint_prompt = gr.Textbox(label="Prompt for the painted part",
                                                    placeholder="a red hat" if amused else "red heart",
                                                    elem_id="inpaint_prompt", max_length=MAX_PROMPT_CHARS)
                        inpaint_btn = gr.Button("Inpaint", variant="primary", elem_id="inpaint")
                    if PAGE.superres:  # a one-stage model (aMUSEd) has nothing to upscale with
                        base, high = PAGE.summary.image_size("base"), PAGE.summary.image_size("superres")
                        with gr.Tab("Super-res", id="superres"):
                            low_res = gr.Image(label=f"Low-resolution image (any size; seen at {base} px)",
                                               type="filepath", image_mode=None, sources=["upload", "clipboard"],
                                               height=300, elem_id="low_res")
                            sr_prompt = gr.Textbox(label="Prompt", placeholder="cat face", elem_id="sr_prompt",
                                                   max_length=MAX_PROMPT_CHARS)
                            sr_btn = gr.Button(f"Upscale to {high} px", variant="primary", elem_id="superres")
                stop_btn = gr.Button("Stop", variant="stop", elem_id="stop")
                with gr.Accordion("Advanced settings", open=False):
                    c: dict[str, gr.Component] = {  # a request's settings, by name
                        "negative_prompt": gr.Textbox(value=d["negative_prompt"], label="Negative prompt",
                                                      placeholder="(none)", max_length=MAX_PROMPT_CHARS)}
                    with gr.Row():
                        c["seed"] = _control("seed", d["seed"], elem_id="seed")
                        c["randomize_seed"] = _control("randomize_seed", d["randomize_seed"])
                    c["timesteps"] = _control("timesteps", d["timesteps"], elem_id="timesteps")
                    c["cond_scale"] = _control("cond_scale", d["cond_scale"])
                    c["temperature"] = _control("temperature", d["temperature"])
                    if PAGE.critic:
                        # The noise perturbs the critic's scores: without the critic it has nothing to act on.
                        c["critic_noise_scale"] = _control("critic_noise_scale", d["critic_noise_scale"],
                                                           interactive=bool(d["use_critic"]), elem_id="critic_noise")
                    c["topk_filter_thres"] = _control("topk_filter_thres", d["topk_filter_thres"])
                    c["schedule"] = _control("schedule", d["schedule"])
                    if "sampler" in PAGE.options:
                        c["sampler"] = _control("sampler", d["sampler"], elem_id="sampler")
                    if PAGE.critic or PAGE.superres:
                        with gr.Row():
                            if PAGE.critic:
                                c["use_critic"] = _control("use_critic", d["use_critic"], elem_id="use_critic")
                            if PAGE.superres:
                                c["superres"] = _control("superres", d["superres"], elem_id="superres_switch")
                    with gr.Row():
                        c["num_images"] = _control("num_images", d["num_images"])
                        c["previews"] = _control("previews", d["previews"], elem_id="previews")
                    micro = [name for name in PAGE.options if name != "sampler"]
                    if micro:
                        with gr.Group(elem_id="micro_conditioning"):
                            gr.Markdown("**Micro-conditioning**: what the model is told of the image it should "
                                        "resemble (aMUSEd's defaults: the output size, uncropped, aesthetic "
                                        "score 6).", elem_classes="caption")
                            for row in (micro[:1], micro[1:3], micro[3:5], micro[5:]):
                                if row:
                                    with gr.Row():
                                        for name in row:
                                            c[name] = _control(name, d[name], elem_id=name)
            with gr.Column(scale=6, min_width=340, elem_id="outputs"):
                status = gr.Textbox(label="Step", interactive=False, elem_id="status",
                                    placeholder="waiting for a prompt")
                with gr.Row():
                    canvas = FrameImage(label="Canvas", format="png", interactive=False, elem_id="canvas",
                                        height=frame, buttons=["download", "fullscreen"])
                    prediction = FrameImage(label="Full prediction", format="png", interactive=False,
                                            elem_id="prediction", height=frame, buttons=["fullscreen"])
                    step_tokens = FrameImage(label="Fixed at this step", format="png", interactive=False,
                                             elem_id="step_tokens", height=frame, buttons=["fullscreen"])
                with gr.Row(equal_height=True):
                    scrub = gr.Slider(1, 2, value=1, step=1, label="Step (all stages: base first, then super-res)"
                                      if PAGE.superres else "Step",
                                   info="drag to replay the run, during it or after; nothing is decoded again",
                                   elem_id="scrub", scale=4)
                    with gr.Column(scale=2, min_width=170):
                        play = gr.Button(PLAY_LABEL, elem_id="play", size="sm")
                        speed = gr.Slider(*playground.PLAY_SPEEDS, value=0.8, step=0.1, label="Seconds per step",
                                       elem_id="speed")
                step_info = gr.Textbox(label="This step", interactive=False, elem_id="step_info", lines=1,
                                       placeholder="what decided the step shown")
                gr.Markdown(TOUR, elem_id="tour", elem_classes="tour")
                with gr.Row():
                    # text to image compares the base stage with the final image; a one-stage model has
                    # only inpainting's original against its result to show here
                    before_after = FrameSlider(label="Before / after" if PAGE.superres else
                                               "Before / after (inpainting)", format="png", interactive=False,
                                               elem_id="before_after", max_height=240)
                    files = gr.File(label="Download: final PNG and decoding GIF", file_count="multiple",
                                    interactive=False, elem_id="files")
                replay = gr.Textbox(visible=False, elem_id="replay")  # the run the step slider replays
                playing = gr.State(False)
                timer = gr.Timer(0.8, active=False)
        with gr.Accordion("Pictures of the decoding", open=True, elem_id="pictures"):
            # one picture (a row of steps per stage), not a gallery of one file per step: see viz.timeline_sheet
            timeline = FrameImage(label="Timeline: every step", show_label=False, format="png", interactive=False,
                                  elem_id="timeline", buttons=["download", "fullscreen"])
            with gr.Row():
                # The figures carry their own titles; a floating label would cover them.
                reveal_map = FrameImage(label="Reveal order", show_label=False, format="png", interactive=False,
                                        elem_id="reveal_map")
                heat_map = FrameImage(label="Confidence when fixed", show_label=False, format="png",
                                      interactive=False, elem_id="heat_map")
            with gr.Row():
                schedule_plot = FrameImage(label="Schedule", show_label=False, format="png", interactive=False,
                                           elem_id="schedule_plot")
                animation = gr.Image(label="Decoding animation (GIF)", interactive=False, elem_id="animation",
                                     height=300)
        with gr.Accordion("Side by side: one prompt and seed, two settings", open=True, elem_id="compare_section"):
            cd = playground.compare_defaults(PAGE)
            with gr.Row(equal_height=True):
                cmp_prompt = gr.Textbox(label="Prompt", placeholder="a watercolor fox" if amused else "grinning face",
                                        elem_id="compare_prompt", max_length=MAX_PROMPT_CHARS, scale=4)
                cmp_seed = _control("seed", cd["seed"], elem_id="compare_seed", scale=1)
                cmp_btn = gr.Button("Compare", variant="primary", elem_id="compare", scale=1)
            from_above = ["the negative prompt"] + [f"*{playground.control(name).label.lower()}*"
                                                    for name in PAGE.compare_shared() if name not in
                                                    ("negative_prompt", "seed", *PAGE.options)]
            if len(PAGE.options) > 1:
                from_above.append("the micro-conditioning")
            gr.Markdown("Both columns decode the same prompt from the same seed, a step of each in turn; "
                        f"{', '.join(from_above[:-1])} and {from_above[-1]} are those of the settings above. "
                        "Difference: near white where both runs fixed the same token, dark where one has not "
                        "fixed it yet, coloured where they chose differently, by how far into the runs both had "
                        "chosen.", elem_classes="caption")
            cols: dict[str, dict[str, gr.Component]] = {}
            with gr.Row(equal_height=False):
                for col in playground.COLUMNS:
                    with gr.Column(min_width=300):
                        gr.Markdown(f"**Column {col.upper()}**")
                        cols[col] = {name: _control(name, cd[f"{name}_{col}"], elem_id=f"{name}_{col}",
                                                    **({"interactive": bool(cd[f"use_critic_{col}"])}
                                                       if name == "critic_noise_scale" else {}))
                                     for name in PAGE.compare_settings()}
            with gr.Row():
                canvas_a = FrameImage(label="Column A", format="png", interactive=False, elem_id="canvas_a",
                                      height=300)
                canvas_b = FrameImage(label="Column B", format="png", interactive=False, elem_id="canvas_b",
                                      height=300)
                difference = FrameImage(label="Where they differ, and when", format="png", interactive=False,
                                        elem_id="difference", height=300)
            with gr.Row():
                status_a = gr.Textbox(label="A", interactive=False, elem_id="status_a")
                status_b = gr.Textbox(label="B", interactive=False, elem_id="status_b")
                compare_info = gr.Textbox(label="Difference", interactive=False, elem_id="compare_info")
        with gr.Accordion("How MaskGIT decodes, and what each control does", open=False):
            gr.Markdown(EXPLANATION)

        named = dict(canvas=canvas, prediction=prediction, status=status, seed=c["seed"], before_after=before_after,
                     timeline=timeline, reveal_map=reveal_map, heat_map=heat_map, schedule_plot=schedule_plot,
                     animation=animation, files=files, step_tokens=step_tokens, step_info=step_info, scrub=scrub,
                     replay=replay, timer=timer, playing=playing, play=play)
        # The events take their inputs as sent (preprocess=False): the handlers check every value and name
        # the parameter in their messages, and decode uploads themselves (size limits before decoding).
        heavy = dict(outputs=[named[name] for name in OUTPUTS], concurrency_limit=1, concurrency_id="decode",
                     show_progress="minimal", show_progress_on=[status], preprocess=False)
        settings = [c[name] for name in PAGE.request_settings()]
        gen_event = gr.on([generate_btn.click, prompt.submit], generate, inputs=[prompt, *settings],
                          api_name="generate", validator=_checks("generate"), **heavy)
        inpaint_event = gr.on([inpaint_btn.click, inpaint_prompt.submit], inpaint,
                              inputs=[editor, inpaint_prompt, *settings], api_name="inpaint",
                              validator=_checks("inpaint"), **heavy)
        decoding = [gen_event, inpaint_event]
        if PAGE.superres:
            decoding.append(gr.on([sr_btn.click, sr_prompt.submit], superres, api_name="superres", **heavy,
                                  validator=_checks("superres"),
                                  inputs=[low_res, sr_prompt, *(c[name] for name in PAGE.request_settings(False))]))
        compared = dict(canvas_a=canvas_a, canvas_b=canvas_b, status_a=status_a, status_b=status_b,
                        difference=difference, compare_info=compare_info, compare_seed=cmp_seed)
        shared = {**{name: c[name] for name in PAGE.compare_shared()}, "seed": cmp_seed}
        compare_inputs = [cmp_prompt] + [shared[name] if name in shared else cols[name[-1]][name[:-2]]
                                         for name in PAGE.compare_parameters()]
        compare_event = gr.on([cmp_btn.click, cmp_prompt.submit], compare, inputs=compare_inputs, api_name="compare",
                              outputs=[compared[name] for name in playground.COMPARE_OUTPUTS], concurrency_limit=1,
                              concurrency_id="decode", show_progress="full", show_progress_on=[canvas_a, canvas_b],
                              preprocess=False, validator=_checks("compare"))
        for col in playground.COLUMNS if PAGE.critic else ():  # the noise acts only with the critic on
            cols[col]["use_critic"].change(lambda on: gr.update(interactive=bool(on)),
                                           inputs=[cols[col]["use_critic"]], outputs=[cols[col]["critic_noise_scale"]],
                                           queue=False, show_progress="hidden", api_visibility="private")
        stop_btn.click(None, cancels=[*decoding, compare_event], queue=False, api_visibility="private")
        # Replaying a run reads its stored steps: quick, off the decoding queue, so it works during a run.
        quick = dict(queue=False, show_progress="hidden", api_visibility="private", preprocess=False)
        scrub.input(_page_event(playground.replay, playground.STEP_OUTPUTS), inputs=[replay, scrub],
                    outputs=[named[name] for name in playground.STEP_OUTPUTS], **quick)
        play.click(_page_event(_toggle_play, ("playing", "timer", "play")), inputs=[replay, playing, speed],
                   outputs=[playing, timer, play], **quick)
        timer.tick(_page_event(_play, PLAY_OUTPUTS), inputs=[replay, scrub, playing],
                   outputs=[named[name] for name in PLAY_OUTPUTS], **quick)
        gr.on([speed.input, speed.release], _page_event(_set_speed, ("timer",)), inputs=[speed], outputs=[timer],
              **quick)
        if PAGE.critic:
            c["use_critic"].change(lambda on: gr.update(interactive=bool(on)), inputs=[c["use_critic"]],
                                   outputs=[c["critic_noise_scale"]], queue=False, show_progress="hidden",
                                   api_visibility="private")
        # the placeholder says when the model is ready, so that a user knows their first click will not wait
        model_timer = gr.Timer(1.0)
        gr.on([demo.load, model_timer.tick], _model_status, outputs=[status, model_timer], queue=False,
              show_progress="hidden", api_visibility="private")
        plot_inputs = [c[name] for name in ("schedule", "timesteps", "superres") if name in c]
        gr.on([demo.load, c["schedule"].change, c["timesteps"].release, *([c["superres"].change] if PAGE.superres
                                                                            else [])],
              schedule_preview, inputs=plot_inputs, outputs=[schedule_plot], queue=False,
              show_progress="hidden", api_visibility="private")
        # The MCP tool (and a plain API endpoint): text to image in one call, no streaming, no page output.
        with gr.Group(visible=False):
            # API clients take a parameter's default from its component's value
            tool_inputs = [gr.Textbox(label="prompt"), gr.Number(0, label="seed", precision=0),
                           gr.Number(_TOOL["timesteps"], label="steps", precision=0),
                           gr.Number(_TOOL["cond_scale"], label="guidance")]
            tool_image = gr.Image(label="image", format="png")
            tool_button = gr.Button("text to image")
        tool_button.click(text_to_image, inputs=tool_inputs, outputs=[tool_image], api_name="text_to_image",
                          preprocess=False, concurrency_limit=1, concurrency_id="decode",
                          validator=_checks("text_to_image"))
    demo.queue(max_size=QUEUE_SIZE, default_concurrency_limit=1)
    _slow_queue_poll(demo)
    return demo


# Gradio's queue looks for a new event every millisecond while it has none (gradio 6.31:
# `Queue.start_processing`), which keeps a tenth of a core busy at all times, during a run too, on a machine
# where the model and the page want every core (measured: 9 % of a core idle, 4.6 % with this). A click's run
# starts within 10 ms all the same.
QUEUE_POLL_S = 0.01


def _slow_queue_poll(demo: gr.Blocks) -> None:
    """The queue's idle poll every QUEUE_POLL_S (a private attribute of Gradio's: left alone where absent)."""
    queue = getattr(demo, "_queue", None)
    if isinstance(getattr(queue, "sleep_when_free", None), float):
        queue.sleep_when_free = max(queue.sleep_when_free, QUEUE_POLL_S)


def _checks(endpoint: str) -> Optional[Callable[..., list]]:
    """The endpoint's validator on ZeroGPU (no GPU is requested for a request that would fail its checks);
    elsewhere the handler's own checks come first anyway, and the messages stay the handlers' gr.Error."""
    return VALIDATORS[endpoint] if ZERO_GPU else None


def _configure_logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per HTTP request otherwise


demo = build_demo()  # built at import (cheap, no model); Spaces and `gradio app.py` look for `demo`
if ZERO_GPU:  # ZeroGPU wants the model in memory before any GPU call; torch.compile does not run there
    _configure_logging()
    playground.MODEL.allow_compile = False
    try:
        playground.MODEL.get()
    except playground.PlaygroundError as err:
        log.warning("the model did not load at start: %s", err)  # each request shows the message


def mcp_enabled() -> bool:
    """The MCP server is on unless MUSE_MCP=0, where Gradio's MCP extra (gradio[mcp]) is installed."""
    if os.environ.get("MUSE_MCP", "1").strip().lower() in ("0", "false", "no", "off"):
        return False
    if importlib.util.find_spec("mcp") is None:
        log.warning("MCP is off: install gradio[mcp] (requirements.txt has it) to serve the text_to_image tool")
        return False
    return True


def main() -> None:
    _configure_logging()
    if not ZERO_GPU:  # (on ZeroGPU it loaded at import)
        try:
            threads = server_threads()  # one core left to the server and a local browser: see muse.compute
        except ValueError as err:
            raise SystemExit(str(err)) from None
        COMPUTE.set_threads(threads)
        log.info("decoding on %d torch thread%s (MUSE_THREADS sets it)", threads, "" if threads == 1 else "s")
        playground.MODEL.load_in_background()  # the page opens meanwhile; a first request waits for it
    # show_error: the handlers raise only messages written for the user (UserError); what Gradio itself
    # refuses before a handler runs (an API client's malformed file data) shows its own message.
    demo.launch(server_name=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
                server_port=int(os.environ.get("GRADIO_SERVER_PORT", "7860")),
                theme=_theme(), css=CSS, show_error=True, max_file_size=MAX_FILE_SIZE,
                footer_links=["api", "gradio"], mcp_server=mcp_enabled())


if __name__ == "__main__":
    main()
