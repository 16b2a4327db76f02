"""A setting's input on the page (Gradio), built from the schema: its label, help, step and the
playground's range."""

from __future__ import annotations

from typing import Any, Optional

import gradio as gr

from .page import PageModel, control, critic_noise_acts, limits


def control_input(name: str, values: dict[str, Any], model: Optional[PageModel] = None, **layout: Any) -> gr.Component:
    """The input of setting `name`, starting at `values[name]`: a checkbox, a dropdown of its choices (those
    `model` offers: no critic order for a model without a critic), a number box (a whole number without a
    slider step: the seed, aMUSEd's sizes and crops) or a slider. The critic noise acts only when the critic
    ranks: it starts disabled where `values` has another unmasking order."""
    setting = control(name)
    common = dict(value=values[name], label=setting.label, info=setting.help, **layout)
    if name == "critic_noise_scale":
        common["interactive"] = critic_noise_acts(values["order"])
    if setting.kind is bool:
        return gr.Checkbox(**common)
    if setting.choices:
        return gr.Dropdown(list(model.choices(name) if model is not None else setting.choices), **common)
    lo, hi = limits(name)
    if setting.step is None:
        return gr.Number(precision=0, minimum=lo, maximum=hi, **common)
    return gr.Slider(lo, hi, step=setting.step, **common)


def critic_noise_update(order: Any) -> dict[str, Any]:
    """The critic noise control after the unmasking order changed: live only under the critic's order."""
    return gr.update(interactive=critic_noise_acts(order))
