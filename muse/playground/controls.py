"""A setting's input on the page (Gradio), built from the schema: its label, help, step and the
playground's range."""

from __future__ import annotations

from typing import Any

import gradio as gr

from .page import control, limits


def control_input(name: str, values: dict[str, Any], **layout: Any) -> gr.Component:
    """The input of setting `name`, starting at `values[name]`: a checkbox, a dropdown of its choices, a
    number box (a whole number without a slider step: the seed, aMUSEd's sizes and crops) or a slider. The
    critic noise acts only with the critic on: it starts disabled where `values` has the critic off."""
    setting = control(name)
    common = dict(value=values[name], label=setting.label, info=setting.help, **layout)
    if name == "critic_noise_scale":
        common["interactive"] = bool(values["use_critic"])
    if setting.kind is bool:
        return gr.Checkbox(**common)
    if setting.choices:
        return gr.Dropdown(list(setting.choices), **common)
    lo, hi = limits(name)
    if setting.step is None:
        return gr.Number(precision=0, minimum=lo, maximum=hi, **common)
    return gr.Slider(lo, hi, step=setting.step, **common)
