"""Uploads as the page's events send them (unprocessed: the handlers decode them, so that the size limits
apply before a picture is decoded), read into checked PIL images; problems as messages for the page."""

from __future__ import annotations

import base64
from typing import Any, Optional

import gradio as gr
from PIL import Image

from .. import images
from ..settings import shown
from .transport import UserError

MAX_UPLOAD_PIXELS = 64_000_000  # larger files are refused before they are decoded
WORK_SIZE = 512  # uploads are reduced to this many pixels on the long side (the model sees 32-64 px)
EDITOR_SHAPE = ("the image and mask as {'background': handle_file(image), 'layers': [handle_file(mask)], "
                "'composite': None}")


def open_image(source: Any, what: str = "image") -> Image.Image:
    """An uploaded file (path, bytes or file object) as a decoded PIL image (RGB, or RGBA with
    transparency) at most WORK_SIZE px on its long side; gr.Error for anything unreadable or too large
    (decompression bombs are refused from the header, before decoding). See `muse.images.open_image`."""
    try:
        return images.open_image(source, what, max_pixels=MAX_UPLOAD_PIXELS, max_side=WORK_SIZE)
    except images.ImageError as err:
        title = "Image too large" if "megapixels" in str(err) else "Not an image"
        raise UserError(str(err), title=title) from None


def open_upload(file: Any, what: str) -> Optional[Image.Image]:
    """An upload as the event sends it (its file data as a dict), a PIL image (Python callers), raw bytes
    or a data: URL -> a checked PIL image (or None)."""
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


def open_editor(value: Any, editor: Optional[gr.ImageEditor]) -> Optional[dict[str, Any]]:
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
    background = open_upload(value.get("background"), "image")
    return {"background": background,
            "layers": [im for im in (open_upload(f, "mask layer") for f in layers) if im is not None],
            "composite": open_upload(value.get("composite"), "image") if background is None else None}
