"""muse playground: watch MaskGIT decode, step by step, in the browser (Gradio 6).

    python app.py    # http://127.0.0.1:7860 (GRADIO_SERVER_NAME / GRADIO_SERVER_PORT override)

The model comes from MUSE_WEIGHTS (a folder or a Hub repo id; unset = the shipped `weights/`). This file is the
page: its components, layout and wiring; the handlers are `muse.playground.endpoints`', serving it is
`muse.playground.server`'s, and every setting's words, range and default come from the schema (`muse.settings`).
"""

from __future__ import annotations

import contextlib
import functools
import inspect
from typing import Any, Sequence

import gradio as gr

from muse import playground
from muse.playground import endpoints, server, texts
from muse.playground.controls import control_input, critic_noise_update
from muse.playground.endpoints import PAGE, compare, generate, inpaint, superres, text_to_image
from muse.playground.transport import FrameImage, FrameSlider

EXPLANATION = texts.explanation(PAGE)
CSS = """
#canvas img, #prediction img, #timeline img, #before_after img, #step_tokens img, #canvas_a img, #canvas_b img,
#difference img { image-rendering: pixelated; }
/* the streamed steps come at half the display size: drawn to fill their frame, pixel for pixel */
#canvas img, #prediction img { width: 100%; height: 100%; object-fit: contain; }
.tour p { font-size: 0.9em; }
#status textarea { font-family: ui-monospace, monospace; }
.caption p { font-size: 0.85em; opacity: 0.8; margin: 0; }
"""
ROWS = (("seed", "randomize_seed"), ("timesteps",), ("cond_scale",), ("guidance_schedule",), ("temperature",),
        ("order", "sampler"), ("critic_noise_scale",), ("topk_filter_thres",), ("schedule",), ("superres",),
        ("num_images", "previews"))
ELEM_IDS = {"critic_noise_scale": "critic_noise", "superres": "superres_switch"}  # (#superres is its tab's button)
UI = dict[str, gr.Component]
PICTURE = dict(format="png", interactive=False)


def _prompt(ui: UI, name: str, label: str, **layout: Any) -> None:
    ui[name] = gr.Textbox(label=label, elem_id=name, max_length=playground.MAX_PROMPT_CHARS, **layout)


def _modes(ui: UI) -> None:
    """A tab per mode: text to image, inpainting, and super-res for a model with the stage; then Stop."""
    hint = texts.PLACEHOLDERS[PAGE.family]
    with gr.Tabs():
        with gr.Tab("Text to image", id="generate"):
            _prompt(ui, "prompt", "Prompt", autofocus=True, placeholder=hint["prompt"])
            ui["generate_btn"] = gr.Button("Generate", variant="primary", elem_id="generate")
            gr.Examples(inputs=[ui["prompt"]], **texts.examples(PAGE))
        with gr.Tab("Inpaint", id="inpaint"):
            # uploads fill the EDIT_SIZE px canvas, so the brush (in canvas pixels, adjustable) is 1/8 of its width
            ui["editor"] = endpoints.use_editor(gr.ImageEditor(
                label="Image: paint over the part to regenerate", type="pil", image_mode="RGBA", height=460,
                sources=["upload", "clipboard"], layers=False, transforms=(), elem_id="editor",
                brush=gr.Brush(default_size=playground.BRUSH_RADIUS, colors=["#ff2d7a"], color_mode="fixed"),
                canvas_size=(playground.EDIT_SIZE, playground.EDIT_SIZE), fixed_canvas=True))
            _prompt(ui, "inpaint_prompt", "Prompt for the painted part", placeholder=hint["inpaint"])
            ui["inpaint_btn"] = gr.Button("Inpaint", variant="primary", elem_id="inpaint")
        if PAGE.superres:  # a one-stage model (aMUSEd) has nothing to upscale with
            with gr.Tab("Super-res", id="superres"):
                ui["low_res"] = gr.Image(label=f"Low-resolution image (any size; seen at "
                                         f"{PAGE.summary.image_size('base')} px)", type="filepath", image_mode=None,
                                         sources=["upload", "clipboard"], height=300, elem_id="low_res")
                _prompt(ui, "sr_prompt", "Prompt", placeholder="cat face")
                ui["superres_btn"] = gr.Button(f"Upscale to {PAGE.summary.image_size('superres')} px",
                                               variant="primary", elem_id="superres")
    ui["stop"] = gr.Button("Stop", variant="stop", elem_id="stop")


def _settings(d: dict[str, Any]) -> UI:
    """The advanced settings: the negative prompt, then a control per setting the served model takes, on the
    rows of ROWS (a control the model lacks left out), then aMUSEd's micro-conditioning in a group of its own."""
    c: UI = {}

    def place(names: Sequence[str], row: bool) -> None:
        names = [name for name in names if name in PAGE.controls()]
        with gr.Row() if row and names else contextlib.nullcontext():
            for name in names:
                c[name] = control_input(name, d, PAGE, elem_id=ELEM_IDS.get(name, name))

    with gr.Accordion("Advanced settings", open=False):
        c["negative_prompt"] = gr.Textbox(value=d["negative_prompt"], label="Negative prompt", placeholder="(none)",
                                          max_length=playground.MAX_PROMPT_CHARS)
        for names in ROWS:
            place(names, len(names) > 1)
        rest = [name for name in PAGE.options if name not in c]
        if rest:
            with gr.Group(elem_id="micro_conditioning"):
                gr.Markdown(texts.MICRO_CONDITIONING, elem_classes="caption")
                for names in (rest[:1], rest[1:3], rest[3:5], rest[5:]):
                    place(names, True)
    return c


def _outputs(ui: UI) -> None:
    """The run as it decodes: its status, the step's pictures, the step slider and Play, before / after."""
    frame = playground.display_size() + 4  # each picture's frame: the display size and a small margin
    ui["status"] = gr.Textbox(label="Step", interactive=False, elem_id="status", placeholder="waiting for a prompt")
    with gr.Row():
        for name, label, buttons in (("canvas", "Canvas", ["download"]), ("prediction", "Full prediction", []),
                                     ("step_tokens", "Fixed at this step", [])):
            ui[name] = FrameImage(label=label, elem_id=name, height=frame, buttons=[*buttons, "fullscreen"], **PICTURE)
    with gr.Row(equal_height=True):
        ui["scrub"] = gr.Slider(1, 2, value=1, step=1, label="Step (all stages: base first, then super-res)"
                                if PAGE.superres else "Step", elem_id="scrub", scale=4,
                                info="drag to replay the run, during it or after; nothing is decoded again")
        with gr.Column(scale=2, min_width=170):
            ui["play"] = gr.Button(endpoints.PLAY_LABEL, elem_id="play", size="sm")
            ui["speed"] = gr.Slider(*playground.PLAY_SPEEDS, value=0.8, step=0.1, label="Seconds per step",
                                    elem_id="speed")
    ui["step_info"] = gr.Textbox(label="This step", interactive=False, elem_id="step_info", lines=1,
                                 placeholder="what decided the step shown")
    gr.Markdown(texts.tour(PAGE), elem_id="tour", elem_classes="tour")
    with gr.Row():  # text to image: the base stage against the final image; a one-stage model: inpainting's
        ui["before_after"] = FrameSlider(label="Before / after" if PAGE.superres else "Before / after (inpainting)",
                                         elem_id="before_after", max_height=240, **PICTURE)
        ui["files"] = gr.File(label="Download: final PNG and decoding GIF", file_count="multiple", interactive=False,
                              elem_id="files")
    ui["replay"] = gr.Textbox(visible=False, elem_id="replay")  # the run the step slider replays
    ui["playing"], ui["timer"] = gr.State(False), gr.Timer(0.8, active=False)


def _pictures(ui: UI) -> None:
    """The pictures of the whole decoding. They carry their own titles; a floating label would cover them."""
    hidden = dict(show_label=False, **PICTURE)
    with gr.Accordion("Pictures of the decoding", open=True, elem_id="pictures"):
        # one picture (a row of steps per stage), not a gallery of one file per step: see viz.timeline_sheet
        ui["timeline"] = FrameImage(label="Timeline: every step", elem_id="timeline",
                                    buttons=["download", "fullscreen"], **hidden)
        with gr.Row():
            ui["reveal_map"] = FrameImage(label="Reveal order", elem_id="reveal_map", **hidden)
            ui["heat_map"] = FrameImage(label="Confidence when fixed", elem_id="heat_map", **hidden)
        with gr.Row():
            ui["schedule_plot"] = FrameImage(label="Schedule", elem_id="schedule_plot", **hidden)
            ui["animation"] = gr.Image(label="Decoding animation (GIF)", interactive=False, elem_id="animation",
                                       height=300)


def _compare(ui: UI) -> dict[str, UI]:
    """Side by side: a prompt and seed, and each column's own settings; the rest are the settings above."""
    cd, parameters = playground.compare_defaults(PAGE), playground.compare_parameters(PAGE)
    with gr.Accordion("Side by side: one prompt and seed, two settings", open=True, elem_id="compare_section"):
        with gr.Row(equal_height=True):
            _prompt(ui, "compare_prompt", "Prompt", placeholder=texts.PLACEHOLDERS[PAGE.family]["prompt"], scale=4)
            ui["compare_seed"] = control_input("seed", cd, PAGE, elem_id="compare_seed", scale=1)
            ui["compare_btn"] = gr.Button("Compare", variant="primary", elem_id="compare", scale=1)
        gr.Markdown(texts.compare_caption(PAGE), elem_classes="caption")
        cols: dict[str, UI] = {}
        with gr.Row(equal_height=False):
            for col in playground.COLUMNS:
                with gr.Column(min_width=300):
                    gr.Markdown(f"**Column {col.upper()}**")
                    own = [p for p in parameters if p.column == col]
                    values = {p.setting: cd[p.name] for p in own}
                    cols[col] = {p.setting: control_input(p.setting, values, PAGE, elem_id=p.name) for p in own}
        with gr.Row():
            for name, label in (("canvas_a", "Column A"), ("canvas_b", "Column B"),
                                ("difference", "Where they differ, and when")):
                ui[name] = FrameImage(label=label, elem_id=name, height=300, **PICTURE)
        with gr.Row():
            for name, label in (("status_a", "A"), ("status_b", "B"), ("compare_info", "Difference")):
                ui[name] = gr.Textbox(label=label, interactive=False, elem_id=name)
    return cols


def _wire(demo: gr.Blocks, ui: UI, c: UI, cols: dict[str, UI]) -> None:
    """The events. The decoding ones take their inputs as sent (preprocess=False): the handlers check every
    value, name the parameter in their messages, and decode uploads themselves (size limits first)."""
    out, check = {**ui, "seed": c["seed"]}, endpoints.validator_for
    # the decoding events run together, up to the batcher's maximum batch: their steps share forward passes
    heavy = dict(concurrency_limit=server.decode_concurrency(), concurrency_id="decode", preprocess=False)
    page = dict(outputs=[out[name] for name in playground.OUTPUTS], show_progress="minimal",
                show_progress_on=[ui["status"]], **heavy)
    modes = [("generate", generate, [], "prompt"), ("inpaint", inpaint, [ui["editor"]], "inpaint_prompt")]
    modes += [("superres", superres, [ui["low_res"]], "sr_prompt")] if PAGE.superres else []
    decoding = [gr.on([ui[f"{api}_btn"].click, ui[prompt].submit], handler, api_name=api, validator=check(api), **page,
                      inputs=[*image, ui[prompt], *(c[n] for n in PAGE.request_settings(api != "superres"))])
                for api, handler, image, prompt in modes]
    shared = {**c, "seed": ui["compare_seed"]}
    decoding.append(gr.on([ui["compare_btn"].click, ui["compare_prompt"].submit], compare, api_name="compare",
                          inputs=[ui["compare_prompt"], *(cols[p.column][p.setting] if p.column else shared[p.setting]
                                                          for p in playground.compare_parameters(PAGE))],
                          outputs=[ui[name] for name in playground.COMPARE_OUTPUTS], show_progress="full",
                          show_progress_on=[ui["canvas_a"], ui["canvas_b"]], validator=check("compare"), **heavy))
    # Page events: quick, off the decoding queue (replaying a run reads its stored steps, so it works during one).
    quick = dict(queue=False, show_progress="hidden", api_visibility="private")

    for panel in [*cols.values(), c] if PAGE.critic else []:  # the noise acts only when the critic ranks
        panel["order"].change(critic_noise_update, inputs=[panel["order"]], outputs=[panel["critic_noise_scale"]],
                              **quick)
    ui["stop"].click(None, cancels=decoding, queue=False, api_visibility="private")
    for event, handler, inputs, outputs in (
            (ui["scrub"].input, endpoints.scrub, ["replay", "scrub"], playground.STEP_OUTPUTS),
            (ui["play"].click, endpoints.toggle_play, ["replay", "playing", "speed"], endpoints.TOGGLE_OUTPUTS),
            (ui["timer"].tick, endpoints.play_tick, ["replay", "scrub", "playing"], endpoints.PLAY_OUTPUTS),
            (functools.partial(gr.on, [ui["speed"].input, ui["speed"].release]), endpoints.set_speed, ["speed"],
             ("timer",))):
        event(handler, inputs=[ui[n] for n in inputs], outputs=[out[n] for n in outputs], preprocess=False, **quick)
    model_timer = gr.Timer(1.0)  # the placeholder says when the model is ready: the first click will not wait
    gr.on([demo.load, model_timer.tick], endpoints.model_status, outputs=[ui["status"], model_timer], **quick)
    plot = [c[name] for name in inspect.signature(endpoints.schedule_preview).parameters if name in c]
    gr.on([demo.load, *(box.release if isinstance(box, gr.Slider) else box.change for box in plot)],
          endpoints.schedule_preview, inputs=plot, outputs=[ui["schedule_plot"]], **quick)
    # The MCP tool (and an API endpoint): text to image in one call; clients take defaults from the components.
    with gr.Group(visible=False):
        tool = [gr.Textbox(label="prompt")] + [gr.Number(p.default, label=name, precision=0 if isinstance(
            p.default, int) else None) for name, p in list(inspect.signature(text_to_image).parameters.items())[1:]]
        image, button = gr.Image(label="image", format="png"), gr.Button("text to image")
    button.click(text_to_image, inputs=tool, outputs=[image], api_name="text_to_image", **heavy,
                 validator=check("text_to_image"))


def build_demo() -> gr.Blocks:
    """The Blocks app, its queue configured (`server.configure_queue`). The page follows the served model
    (`PAGE`): the controls, tabs and picture sizes of what it has (`muse.playground.page.PageModel`)."""
    ui: UI = {}
    with gr.Blocks(title="muse · MaskGIT playground", delete_cache=(3600, 3600)) as demo:
        gr.Markdown(texts.header(PAGE), elem_id="header")
        if PAGE.missing():
            gr.Markdown(f"*{PAGE.missing()}*", elem_id="model_note")
        with gr.Row(equal_height=False, elem_id="main"):
            with gr.Column(scale=5, min_width=340):
                _modes(ui)
                c = _settings(playground.page_defaults(PAGE))
            with gr.Column(scale=6, min_width=340, elem_id="outputs"):
                _outputs(ui)
        _pictures(ui)
        cols = _compare(ui)
        with gr.Accordion("How MaskGIT decodes, and what each control does", open=False):
            gr.Markdown(EXPLANATION)
        _wire(demo, ui, c, cols)
    return server.configure_queue(demo)


demo = build_demo()  # built at import (cheap, no model); Spaces and `gradio app.py` look for `demo`
server.load_on_zero_gpu()


def main() -> None:
    server.launch(demo, css=CSS)


if __name__ == "__main__":
    main()
