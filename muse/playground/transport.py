"""How the playground's updates travel to the page through Gradio. Each piece here exists because
Gradio's plain way would cost more server or browser time on every step, or could not say it:

- `FrameImage` / `InlinePicture`: a passing step's pictures ride inside the update, not as files the
  browser then fetches one request each;
- `FrameSlider` / `cached_png`: a result's pictures are written to Gradio's cache once, whole;
- `Stream`: an output an update leaves out is sent again when that costs nothing, not skipped, since a
  skip makes Gradio rebuild the component's whole config;
- `endpoint` / `validator`: a request's parameters by name and described, for API clients and MCP, and
  checked before the event is queued (on ZeroGPU, before a GPU is asked for); each request decoded as a
  job of the process's batcher (`muse.batching`), its forward passes shared with the other requests';
- `slow_queue_poll`: the idle queue's poll, which otherwise keeps part of a core busy.
"""

from __future__ import annotations

import base64
import functools
import hashlib
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

from .errors import PlaygroundError
from .model import batcher, release_memory
from .page import PASSING, RENAMED, StepSlider, Update

log = logging.getLogger("muse.app")

# How often Gradio's idle queue looks for a new event: its own default (1 ms) keeps part of a core busy at
# all times, on a machine where the model and the page want every core; a click still starts within 10 ms.
QUEUE_POLL_S = 0.01


class UserError(gr.Error):
    """A message about the user's input: shown on the page (or to the API client), not logged as a
    server fault with a traceback."""

    def __init__(self, message: str, title: str = "Error") -> None:
        super().__init__(message, title=title, print_exception=False)


def problem(err: Exception) -> UserError:
    """A failure inside a request as the message the user sees (unexpected ones logged, never shown)."""
    if isinstance(err, ValueError):  # the playground's messages, and the library's validation (WeightsError too)
        return UserError(str(err), title=getattr(err, "title", "Error"))
    log.exception("request failed")
    return UserError(f"Something went wrong on the server ({type(err).__name__}); the server log has the details. "
                     "Try again, perhaps with other settings.", title="Server error")


# ----- pictures -----------------------------------------------------------------------------------

def _png(image: Image.Image) -> bytes:
    # zlib's fastest level: a fraction of the default's time, for a few more bytes on the way to a page
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


def cached_png(image: Image.Image, cache_dir: str) -> str:
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
    """gr.Image (the same page component) that also takes `InlinePicture`s. A streamed step's small
    pictures, replaced at the next step, travel in the update itself instead of as cached files that the
    browser fetches in requests of their own (each costing the server a file write, its hash and an HTTP
    response). Results stay files (downloads, API clients), saved once by `cached_png`."""

    is_template = True  # drawn by gr.Image's own front end

    def postprocess(self, value: Any) -> Any:
        if isinstance(value, InlinePicture):
            return ImageData(url=value.url, size=value.size, orig_name="step.png", mime_type="image/png")
        if isinstance(value, Image.Image):
            value = cached_png(value, self.GRADIO_CACHE)
        return super().postprocess(value)


class FrameSlider(gr.ImageSlider):
    """gr.ImageSlider whose pictures are saved once (`cached_png`), like `FrameImage`'s results."""

    is_template = True  # drawn by gr.ImageSlider's own front end

    def postprocess(self, value: Any) -> Any:
        if isinstance(value, (tuple, list)):
            value = tuple(cached_png(v, self.GRADIO_CACHE) if isinstance(v, Image.Image) else v for v in value)
        return super().postprocess(value)


# ----- updates --------------------------------------------------------------------------------------

def shown(value: Any, ranges: dict[str, int], name: str, inline: bool) -> Any:
    """An update's value as Gradio takes it: the step slider's position and range as a slider update; a
    picture inline (`InlinePicture`) when `inline` (a passing frame of a run, or a replayed step).
    `ranges`: the ranges already sent, by output name; a range goes again only when it changes, because
    Gradio rebuilds a component's whole config (its JSON schema included) for each update of its
    properties."""
    if inline and isinstance(value, Image.Image):
        return InlinePicture(value)
    if isinstance(value, StepSlider):
        maximum = max(2, value.maximum)  # a 1-step slider cannot be drawn
        if ranges.get(name) == maximum:
            return value.value
        ranges[name] = maximum
        return gr.update(value=value.value, maximum=maximum)
    return value


def _cheap(value: Any) -> bool:
    """Whether sending `value` again costs nothing worth counting (see `Stream`). A text may also name a
    file (the decoding GIF), but paths come only in a run's last two updates, which carry the same path
    anyway (Gradio hashes the file again and keeps its first copy)."""
    return (value is None or isinstance(value, (bool, int, float, str, InlinePicture))  # a picture encoded once
            or (isinstance(value, (list, tuple)) and not value))


class Stream:
    """One stream's updates as Gradio takes them (`values`). An output an update leaves out keeps its
    value: when this stream last sent it a value that costs nothing to send again (None, an empty list,
    a number, a text, or a picture sent inline, which is encoded once), that value goes again; otherwise
    it is skipped. Gradio sends a streamed output as its difference from the last one, so a value sent
    again travels as nothing, whereas each `gr.skip()` makes Gradio rebuild the component and its whole
    config (JSON schema included), which costs the server more than a step of the model."""

    def __init__(self) -> None:
        self.ranges: dict[str, int] = {}  # the slider ranges sent (see `shown`)
        self.again: dict[str, Any] = {}  # the cheap values sent, by output name

    def values(self, update: Update, outputs: tuple[str, ...]) -> tuple:
        """One value per name of `outputs`; pictures inline on an update of passing frames (`PASSING`)."""
        inline = bool(update.get(PASSING))
        out = []
        for name in outputs:
            if name in update:
                value = shown(update[name], self.ranges, name, inline)
                if _cheap(value):
                    self.again[name] = value
                else:
                    self.again.pop(name, None)
            else:
                value = self.again.get(name, gr.skip())
            out.append(value)
        return tuple(out)


# ----- events ---------------------------------------------------------------------------------------

def _bound(signature: inspect.Signature, args: tuple, kwargs: dict[str, Any]) -> dict[str, Any]:
    for name in kwargs:
        if name not in signature.parameters:  # a parameter that is no longer taken: say what replaces it
            column = name[-2:] if name[-2:] in ("_a", "_b") else ""
            message = f"{name} is not a parameter of this endpoint"
            if name[:len(name) - len(column)] in RENAMED:
                new, value = RENAMED[name[:len(name) - len(column)]]
                message += f": send {new}{column} instead ({name}=True is {new}{column}={value!r})"
            raise UserError(message + ".")
    bound = signature.bind(*args, **kwargs)
    bound.apply_defaults()
    return dict(bound.arguments)


def endpoint(run: Callable[..., Iterator[Update]], leading: tuple[str, ...], signature: inspect.Signature,
             doc: str, outputs: tuple[str, ...], frame_s: Callable[[], float],
             image: Optional[Callable[[Any], Any]] = None) -> Callable[..., Iterator[tuple]]:
    """The handler of a streamed request `run(*leading, settings, frame_s=...)`: with `signature` (API
    clients see the parameters by name) and `doc` as its own, `image` decoding the upload the event sends
    as it came, one value per output in `outputs` order (`Stream`), at the pace `frame_s()` reads, and
    problems as gr.Error messages. `run` runs as a job of the process's batcher (`model.batcher`): on a
    thread of its own, its forward passes shared with the other requests decoding (on the compute thread),
    its updates read here as they come. Closing the handler (Gradio's cancel) ends the job at its next
    forward; a job that raises ends alone."""

    @functools.wraps(run, assigned=("__module__", "__name__", "__qualname__"))
    def handler(*args: Any, **kwargs: Any) -> Iterator[tuple]:
        values = _bound(signature, args, kwargs)
        job = None
        try:
            if image is not None:
                values["image"] = image(values["image"])
            stream = Stream()
            job = batcher().stream(run, *(values.pop(name) for name in leading), values, frame_s=frame_s())
            for update in job:
                yield stream.values(update, outputs)
        except gr.Error:
            raise
        except Exception as err:
            raise problem(err) from None
        finally:
            if job is not None:
                job.close()  # a cancelled request leaves the batch at its next step (nothing if it ended)
                release_memory()

    handler.__signature__ = signature  # type: ignore[attr-defined]  (Gradio names the API parameters from it)
    handler.__doc__ = doc
    return handler


def validator(check: Callable[..., Any], leading: tuple[str, ...], signature: inspect.Signature) -> Callable[..., list]:
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


def page_event(fn: Callable[..., Update], outputs: tuple[str, ...]) -> Callable[..., Any]:
    """A quick page handler (replay, play): its update as one value per name of `outputs` (its pictures
    inline, like a run's passing frames), its PlaygroundError as a message."""

    @functools.wraps(fn)
    def handler(*args: Any) -> Any:
        try:
            update = fn(*args)
        except PlaygroundError as err:
            raise UserError(str(err), title=err.title) from None
        values = Stream().values({**update, PASSING: True}, outputs)
        return values[0] if len(values) == 1 else values  # Gradio takes one output's value bare

    return handler


def slow_queue_poll(demo: gr.Blocks) -> bool:
    """Set the queue's idle poll to QUEUE_POLL_S; False (and a warning) where this Gradio keeps it elsewhere.
    Gradio has no public setting for it: this reads its queue's `sleep_when_free`, the one private attribute
    the playground uses."""
    queue = getattr(demo, "_queue", None)
    if not isinstance(getattr(queue, "sleep_when_free", None), float):
        log.warning("the idle queue polls at Gradio's own pace: this Gradio has no Queue.sleep_when_free")
        return False
    queue.sleep_when_free = max(queue.sleep_when_free, QUEUE_POLL_S)
    return True
