"""The page's handlers as Gradio calls them: the four streamed requests and the text-to-image tool (each
with its validator), and the quick page events (replay and play, the model's status, the schedule plot).
On ZeroGPU every handler that decodes runs on a GPU asked for per call (`server.gpu`), and its inputs are
checked before one is asked for (`validator_for`)."""

from __future__ import annotations

import inspect
import os
from typing import Any, Callable, Optional

import gradio as gr
from PIL import Image

from . import texts
from .compare import COMPARE_OUTPUTS, check_compare, compare_parameters, compare_signature
from .compare import compare as compare_run
from .errors import PlaygroundError
from .model import MODEL, batcher
from .page import OUTPUTS, STEP_OUTPUTS, Update, page_defaults, page_model
from .pictures import schedule_preview as schedule_plot
from .replay import check_speed, play_next, replay
from .requests import Request, check_request, endpoint_signature
from .server import ZERO_GPU, gpu
from .stream import frame_seconds
from .stream import generate as generate_run
from .stream import inpaint as inpaint_run
from .stream import superres as superres_run
from .transport import endpoint, page_event, problem, validator
from .uploads import EDITOR_SHAPE, open_editor, open_upload

try:
    FRAME_S = frame_seconds(os.environ.get("MUSE_STREAM_FPS"))  # the page's pace: `stream.Pace`
except ValueError as err:
    raise SystemExit(str(err)) from None
PAGE = page_model()  # the served model as the page shows it, read from its configs: no model is loaded


_EDITOR: list[gr.ImageEditor] = []  # the page's image editor (`use_editor`)


def use_editor(editor: gr.ImageEditor) -> gr.ImageEditor:
    """Read the inpainting uploads through `editor` (it keeps the canvas the browser sends ahead of the
    event); `editor` itself."""
    _EDITOR[:] = [editor]
    return editor


def _frame_s() -> float:
    return FRAME_S


def _check_upload(image: Any, prompt: Any, values: dict[str, Any]) -> Request:
    if image is None:
        raise PlaygroundError("Upload an image first.", title="No image")
    return check_request(prompt, values)


IMAGE_HELP = {"superres": "the low-resolution image (any size, seen at the base stage's size): an uploaded file, "
                          "from the API handle_file(path)",
              "inpaint": f"{EDITOR_SHAPE}; the mask is white (or painted, with alpha) where to regenerate"}
VALIDATORS: dict[str, Callable[..., list]] = {}


def _streamed(run: Callable[..., Any], leading: tuple[str, ...], check: Callable[..., Any], superres: bool = True,
              image: Optional[Callable[[Any], Any]] = None) -> Callable[..., Any]:
    """A request endpoint of the page: `run`'s handler, its parameters the served model's request settings."""
    signature = endpoint_signature(leading, superres, model=PAGE)
    helps = {name: IMAGE_HELP[run.__name__] if name == "image" else texts.parameter_help(PAGE, name)
             for name in signature.parameters}
    VALIDATORS[run.__name__] = validator(check, leading, signature)
    return gpu(endpoint(run, leading, signature, texts.with_args(run.__doc__, helps), OUTPUTS, _frame_s, image))


generate = _streamed(generate_run, ("prompt",), check_request)
inpaint = _streamed(inpaint_run, ("image", "prompt"), _check_upload,
                    image=lambda value: open_editor(value, _EDITOR[0] if _EDITOR else None))
superres = _streamed(superres_run, ("image", "prompt"), _check_upload, superres=False,  # (with a super-res stage)
                     image=lambda value: open_upload(value, "image"))
_compare_signature = compare_signature(PAGE)
_compare_helps = {"prompt": texts.prompt_help(PAGE), **{p.name: texts.parameter_help(PAGE, p.setting, p.column)
                                                        for p in compare_parameters(PAGE)}}
VALIDATORS["compare"] = validator(check_compare, ("prompt",), _compare_signature)
compare = gpu(endpoint(compare_run, ("prompt",), _compare_signature,
                       texts.with_args(compare_run.__doc__, _compare_helps), COMPARE_OUTPUTS, _frame_s))

_TOOL = page_defaults(PAGE)  # the weights' tuned defaults


def _tool_request(prompt: Any, seed: Any = 0, steps: Any = _TOOL["timesteps"],
                  guidance: Any = _TOOL["cond_scale"]) -> Request:
    values = {**_TOOL, "seed": seed, "randomize_seed": False, "timesteps": steps, "cond_scale": guidance,
              "num_images": 1, "previews": False}
    return check_request(prompt, values)


def _draw(request: Request) -> Image.Image:
    pipe = MODEL.get()
    return pipe(request.prompt, **request.pipeline_kwargs(pipe))[0]


def text_to_image(prompt: str, seed: int = 0, steps: int = _TOOL["timesteps"],
                  guidance: float = _TOOL["cond_scale"]) -> Image.Image:
    # (its description, for Gradio's API page and MCP, is written for the served model below)
    try:
        request = _tool_request(prompt, seed, steps, guidance)
        return batcher().submit(_draw, request).result()  # its forwards shared with the requests decoding
    except gr.Error:
        raise
    except Exception as err:
        raise problem(err) from None


text_to_image.__doc__ = texts.tool_description(PAGE)
text_to_image = gpu(text_to_image)
VALIDATORS["text_to_image"] = validator(lambda prompt, values: _tool_request(prompt, **values), ("prompt",),
                                        inspect.signature(_tool_request))


def validator_for(name: str) -> Optional[Callable[..., list]]:
    """The endpoint's validator on ZeroGPU (no GPU is requested for a request that would fail its checks);
    elsewhere the handler's own checks come first anyway, and the messages stay the handlers' gr.Error."""
    return VALIDATORS[name] if ZERO_GPU else None


# ----- quick page events: off the decoding queue ------------------------------------------------------

PLAY_LABEL, PAUSE_LABEL = "▶ Play", "⏸ Pause"
MODEL_LOADING = "loading the model… type a prompt meanwhile: the first image waits for it"
MODEL_READY = "model ready: waiting for a prompt"


def _play(key: Any, step: Any, playing: bool) -> Update:
    """One tick of the play button: the next step, and the timer stopped at the run's end."""
    if not playing:
        return {"timer": gr.Timer(active=False)}
    update, more = play_next(key, step)
    if not more:
        update.update(timer=gr.Timer(active=False), playing=False, play=gr.Button(value=PLAY_LABEL))
    return update


def _toggle_play(key: Any, playing: bool, speed: Any) -> Update:
    """Start (from the shown step) or pause the replay at `speed` seconds per step."""
    if not playing:
        replay(key, None)  # a clear message when there is no run to play
    seconds = check_speed(speed)
    return {"playing": not playing, "timer": gr.Timer(value=seconds, active=not playing),
            "play": gr.Button(value=PAUSE_LABEL if not playing else PLAY_LABEL)}


PLAY_OUTPUTS = (*STEP_OUTPUTS, "timer", "playing", "play")
TOGGLE_OUTPUTS = ("playing", "timer", "play")
scrub = page_event(replay, STEP_OUTPUTS)
play_tick = page_event(_play, PLAY_OUTPUTS)
toggle_play = page_event(_toggle_play, TOGGLE_OUTPUTS)
def _set_speed(speed: Any) -> Update:
    return {"timer": gr.Timer(value=check_speed(speed))}


set_speed = page_event(_set_speed, ("timer",))


def model_status() -> tuple[Any, Any]:
    """The status line's placeholder while no run has written it (the model loads while the server starts;
    a first request waits for it), and the timer that asks again until the model is ready or failed."""
    if MODEL.is_ready():
        return gr.update(placeholder=MODEL_READY), gr.Timer(active=False)
    if MODEL.start_error is not None:
        return gr.update(placeholder=f"the model did not load: {MODEL.start_error}"), gr.Timer(active=False)
    if not MODEL.is_starting():  # nothing loads it before a request (no `main()`): the first one will
        return (gr.update(placeholder="waiting for a prompt (the model loads with the first one)"),
                gr.Timer(active=False))
    return gr.update(placeholder=MODEL_LOADING), gr.skip()


def schedule_preview(schedule: Any, timesteps: Any, superres: Any = True) -> Any:
    """The schedule plot for the current settings (before any run); left alone while one is invalid."""
    plot = schedule_plot(schedule, timesteps, superres)
    return gr.skip() if plot is None else plot
