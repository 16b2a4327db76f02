"""Requests and their checks: a request's values, as a page or an API client sends them, checked once by
the schema within the page's limits into a `Request` that the pipeline takes as it is."""

from __future__ import annotations

import dataclasses
import inspect
import secrets
from dataclasses import dataclass
from typing import Any, Mapping, Optional, Sequence

import numpy as np
from PIL import Image

from ..images import to_rgb
from ..token_pipeline import TokenPipeline
from ..settings import AMUSED_SCHEMA, SCHEMA, AmusedSettings, SettingError
from .errors import PlaygroundError
from .page import LIMITS, MAX_PROMPT_CHARS, PageModel, control, page_defaults, page_model


@dataclass(frozen=True)
class Request:
    """A checked request: its prompt and negative prompt, the settings it sets (`values`: fields of
    `GenerationSettings`, each checked; the rest are the weights' defaults), aMUSEd's options for a model
    that takes them, and the previews switch."""

    prompt: str
    negative_prompt: Optional[str]
    values: Mapping[str, Any]
    options: Optional[AmusedSettings] = None
    previews: bool = True

    @property
    def seed(self) -> int:
        return self.values["seed"]

    def with_values(self, values: Mapping[str, Any]) -> Request:
        """This request with some of its checked settings replaced (aMUSEd's options among them)."""
        own = {name: value for name, value in values.items() if name in AMUSED_SCHEMA}
        return dataclasses.replace(self, values={**self.values, **{k: v for k, v in values.items() if k not in own}},
                                   options=dataclasses.replace(self.options, **own) if own else self.options)

    def pipeline_kwargs(self, pipe: TokenPipeline) -> dict[str, Any]:
        """The keyword arguments of `pipe`'s requests: its settings made by `pipe.settings` (the weights'
        tuned defaults for those the request leaves out), the negative prompt, and aMUSEd's options."""
        kwargs = {"settings": pipe.settings(**self.values), "negative_prompt": self.negative_prompt}
        if self.options is not None:
            kwargs["options"] = pipe.options(**self.options.options())
        return kwargs


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


def check_setting(name: str, value: Any, model: Optional[PageModel] = None) -> Any:
    """One control's value checked in the playground's limits, as an API client may send it (numbers as
    text, flags as 0/1); with `model`, a choice among those it offers (`PageModel.choices`)."""
    setting = control(name)
    try:
        value = setting.check(value, LIMITS.get(name), coerce=True)
        if model is not None and setting.choices:
            dataclasses.replace(setting, choices=model.choices(name)).check(value)
        return value
    except SettingError as err:
        message = str(err)
        if name == "order" and value == "critic":  # offered by the schema, not by this model
            message = message.replace("; got", " (this model has no token critic); got")
        raise PlaygroundError(message) from None


def check_order(order: str, options: Optional[AmusedSettings]) -> None:
    """Refuse an unmasking order the request's sampler does not take: aMUSEd's own rules rank by confidence
    alone (`muse.amused.AmusedPipeline`), so another order needs our sampler."""
    if options is not None and options.sampler == "amused" and order != "confidence":
        raise PlaygroundError(f"order must be confidence under aMUSEd's own sampler rules (sampler amused); "
                              f"choose sampler muse for the {order} order.")


def ordered(values: dict[str, Any]) -> dict[str, Any]:
    """A request's checked settings ranking exactly as their `order` says: with `use_critic` off, so that
    weights whose defaults turn the critic on cannot put it in charge of an order named otherwise."""
    return {**values, "use_critic": False} if "order" in values else values


def check_options(values: Mapping[str, Any], model: PageModel) -> Optional[AmusedSettings]:
    """The model's own settings among `values` (aMUSEd's sampler and micro-conditioning), checked by their
    schema; None for a model without any."""
    if not model.options:
        return None
    checked = {name: check_setting(name, values[name]) for name in model.options if name in values}
    try:
        return AmusedSettings(**checked)
    except SettingError as err:
        raise PlaygroundError(str(err)) from None


def check_seed(values: Mapping[str, Any]) -> int:
    """The request's seed: a new one when `randomize_seed` is on, else its `seed`."""
    if check_setting("randomize_seed", values["randomize_seed"]):
        return secrets.randbelow(int(LIMITS["seed"][1]) + 1)
    if values["seed"] is None or values["seed"] == "":
        raise PlaygroundError("Give a seed (a whole number) or turn on “randomize seed”.")
    return check_setting("seed", values["seed"])


def check_request(prompt: Any, values: Mapping[str, Any], model: Optional[PageModel] = None) -> Request:
    """A request from the endpoint's values by name (the served model's request settings; a setting it
    does not take, such as the critic of a model without one, is left to the model's defaults)."""
    model = model or page_model()
    prompt = check_prompt(prompt)
    negative = check_prompt(values["negative_prompt"], "negative_prompt", required=False)
    checked = {name: check_setting(name, values[name], model) for name in model.controls()
               if name in SCHEMA and name != "seed" and name in values}
    options = check_options(values, model)
    if "order" in checked:
        check_order(checked["order"], options)
    return Request(prompt, negative, ordered({**checked, "seed": check_seed(values)}), options,
                   check_setting("previews", values["previews"]))


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
