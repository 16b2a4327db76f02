"""What the page and its API say, written from the page model and the settings' own words: the header,
how decoding works, the tour of the pictures, the examples, every API parameter's description and the
text-to-image tool's."""

from __future__ import annotations

import os
from typing import Any, Mapping, Optional

from ..amused.load import LICENSE as AMUSED_LICENSE
from .model import MODEL
from .page import NEGATIVE_PROMPT_HELP, PageModel, control, limits

EXAMPLES = [("😀", "grinning face"), ("❤️", "red heart"), ("👍", "thumbs up sign"), ("🚀", "rocket"),
            ("💩", "pile of poo"), ("🐱", "cat face"), ("😎", "smiling face with sunglasses"), ("🔥", "fire")]
# For aMUSEd (a general text-to-image model): prompts of its kind instead of emoji names.
AMUSED_EXAMPLES = ["a watercolor painting of a fox in the snow", "a red vintage car on a country road, photo",
                   "a bowl of ramen, studio lighting", "a lighthouse at sunset, oil painting",
                   "an astronaut riding a horse on the moon", "a cozy cabin in a pine forest at night"]
# What the prompt boxes suggest, by model family.
PLACEHOLDERS = {"muse": {"prompt": "grinning face", "inpaint": "red heart"},
                "amused": {"prompt": "a watercolor fox", "inpaint": "a red hat"}}
# The text-to-image tool's parameters: the setting each sets, and what it does in the tool's words.
TOOL_PARAMETERS = {"seed": ("seed", "the random seed; the same seed and settings give the same image"),
                   "steps": ("timesteps", "decoding steps of each stage; more are slower and often cleaner"),
                   "guidance": ("cond_scale", "classifier-free guidance scale (cond_scale); higher follows the "
                                              "prompt more closely")}


def examples(model: PageModel) -> dict[str, Any]:
    """The prompt examples under the prompt box, as gr.Examples' keyword arguments but `inputs`."""
    if model.family == "amused":
        return {"examples": [[text] for text in AMUSED_EXAMPLES], "label": "Examples"}
    return {"examples": [[text] for _, text in EXAMPLES], "example_labels": [f"{e} {text}" for e, text in EXAMPLES],
            "label": "Examples (emoji the model was trained on)"}


def header(model: PageModel) -> str:
    """The page's title and what it serves: its stages and sizes, and for aMUSEd the weights' licence."""
    text = "# muse · MaskGIT playground\nType a prompt and watch the image appear token by token: " + model.describe()
    if model.family == "amused":
        source = MODEL.source() or ""
        # a local folder by its name only: the page does not show the server's paths
        name = os.path.basename(os.path.normpath(source)) if os.path.isdir(source) else source
        text += (f"\n\nServing **aMUSEd** (`{name}`) through muse's sampler: its weights are under the "
                 f"{AMUSED_LICENSE} licence, not muse's.")
    return text


def controls_table(model: PageModel) -> str:
    """What each control of the page does, in markdown, from the settings' help texts."""
    rows = [("Negative prompt", NEGATIVE_PROMPT_HELP)]
    rows += [(control(name).label, control(name).help) for name in model.controls()]
    return "| control | what it does |\n|---|---|\n" + "\n".join(f"| **{label}** | {text} |" for label, text in rows)


def explanation(model: PageModel) -> str:
    """How decoding works and what each control does, for the served model's stages and sizes."""
    s = model.summary
    grids = []
    for stage in s.stage_names(True):
        side, kind = s.image_size(stage) // s.downsample, ""
        if model.superres:
            kind = "super-res " if stage == "superres" else "base "
        grids.append(f"{side}x{side} tokens for the {s.image_size(stage)} px {kind}image")
    vq = "aMUSEd's VQ autoencoder" if model.family == "amused" else "a small VQ autoencoder"
    critic = ", the ones the token critic judges likeliest right (critic)" if model.critic else ""
    text = f"""
### How MaskGIT decodes
An image is a grid of **tokens** (codes of {vq}: {', '.join(grids)}). Decoding starts with every
token **masked** (grey on the canvas). At each step the transformer predicts *all* masked tokens at once (the
**prediction** panel), the sampler **keeps** some of them (outlined in yellow) and masks the rest again; the
**schedule** decides how many stay masked after each step, and the last step fixes them all. The **unmasking
order** decides which are kept: the ones the model is surest of (confidence){critic}, or the next ones in an
order fixed before the first step that never looks at the model's output (halton: spread evenly over the image
by a 2-D Halton sequence from a random start; random: a random order)."""
    if model.superres:
        text += (f" The super-res stage then repeats this at {s.image_size('superres')} px, conditioned on the "
                 "base image's tokens.")
    text += "\n\n" + controls_table(model) + "\n\n"
    if model.family == "amused":
        text += ("The step-by-step pictures colour each token with one colour per code (a palette fitted once "
                 "from the real decoder), so streaming every step costs almost nothing at 256 or 512 px; the "
                 "final image always comes from the full decoder.\n\n")
    else:
        text += ("The step-by-step pictures come from a tiny *preview decoder* distilled from the tokenizer's "
                 "decoder (about 15 times cheaper, so streaming every step costs little); the final image always "
                 "comes from the full decoder.\n\n")
    critic = " the critic's probability that it is right (when the critic ranks)," if model.critic else ""
    text += ("The reveal-order map shows the step that fixed each token: how differently the orders spread their "
             "choices over the image. The confidence figure says what ranked the tokens. Ranked by the model"
             f"{' or its critic' if model.critic else ''}, it shows for each token at the step that fixed it the "
             f"model's own probability of the token (0-1),{critic} and the random noise the sampler added to its "
             "keep score before ranking, with how many choices that noise made. Under the halton or random order "
             "it shows each token's place in that order, which alone chose it (there is no noise), and the model's "
             "probability of the token for information: under a fixed order it ranks nothing.\n")
    return text


def tour(model: PageModel) -> str:
    """How to read the pictures of a run, under them."""
    critic = ", or, when the critic ranks, the critic's probability that it is right" if model.critic else ""
    return f"""**Reading the pictures.** The *canvas* is the image after the step shown: grey tokens are still masked
and yellow outlines mark the tokens fixed at that step. The *full prediction* fills every masked token with the model's
current guess. *Fixed at this step* colours those tokens by what ranked them: the model's probability of the
token{critic}; the line below says how many of them the sampler's random noise chose instead. Under the halton or
random order the order alone chose them, wherever they lie: the colours are then the model's probability, for
information, and the line gives their places in the order. Drag the step slider or press Play to go back through
the run; the figures further down sum up the whole run."""


MICRO_CONDITIONING = ("**Micro-conditioning**: what the model is told of the image it should resemble (aMUSEd's "
                      "defaults: the output size, uncropped, aesthetic score 6).")


def compare_caption(model: PageModel) -> str:
    """What the side-by-side section does, and which settings it takes from the settings above."""
    above = [name for name in model.compare_shared() if name not in ("negative_prompt", "seed", *model.options)]
    above = ["the negative prompt", *(f"*{control(name).label.lower()}*" for name in above),
             *(["the micro-conditioning"] if len(model.options) > 1 else [])]
    return (f"Both columns decode the same prompt from the same seed, a step of each in turn; {', '.join(above[:-1])} "
            f"and {above[-1]} are those of the settings above. Difference: near white where both runs fixed the same "
            "token, dark where one has not fixed it yet, coloured where they chose differently, by how far into the "
            "runs both had chosen.")


def prompt_help(model: PageModel) -> str:
    return ("what to draw, e.g. “a watercolor painting of a fox in the snow”" if model.family == "amused" else
            "what to draw, e.g. “red heart” or “grinning face” (the shipped model knows emoji names)")


def parameter_help(model: PageModel, name: str, column: Optional[str] = None) -> str:
    """An endpoint parameter's description: the prompts', or the setting's (`setting_help`, with the
    choices the model offers)."""
    if name == "prompt":
        return prompt_help(model)
    if name == "negative_prompt":
        return NEGATIVE_PROMPT_HELP
    return setting_help(name, column, model)


def _range(name: str) -> str:
    lo, hi = limits(name)
    return f"{lo} to {hi}"


def setting_help(name: str, column: Optional[str] = None, model: Optional[PageModel] = None) -> str:
    """An API parameter that sets a setting: the schema's help and the playground's range or the choices
    (those `model` offers), and the side-by-side column it sets it for."""
    setting = control(name)
    text = setting.help or setting.label
    if setting.kind in (int, float):
        text += f" ({_range(name)})"
    elif setting.choices:
        text += " (one of " + ", ".join(map(str, model.choices(name) if model else setting.choices)) + ")"
    return text + (f"; column {column.upper()}" if column else "")


def with_args(doc: str, helps: Mapping[str, str]) -> str:
    """`doc` with an `Args:` section describing every parameter in `helps` (Gradio's API page and MCP read it)."""
    lines = [f"    {name}: {text}" for name, text in helps.items()]
    return (doc or "").strip() + "\n\nArgs:\n" + "\n".join(lines) + "\n"


def tool_description(model: PageModel) -> str:
    """The text-to-image tool's description (Gradio's API page and MCP read it), for the model served."""
    size = model.output_size()
    if model.family == "amused":
        doc = (f"Draw a picture from a text prompt with aMUSEd (a public MUSE model) on this server: MaskGIT "
               f"decoding, one {size} px stage, aMUSEd's sampler rules and micro-conditioning defaults.")
    elif model.superres:
        doc = (f"Draw a small emoji-like picture from a text prompt with the muse model: MaskGIT decoding, a "
               f"{model.summary.image_size('base')} px base stage then a {size} px super-res stage, on this "
               "server. Quick (well under a second on a CPU).")
    else:
        doc = (f"Draw a small emoji-like picture from a text prompt with the muse model: MaskGIT decoding, one "
               f"{size} px stage, on this server.")
    helps = {"prompt": prompt_help(model)}
    helps.update({name: f"{words} ({_range(setting)})" for name, (setting, words) in TOOL_PARAMETERS.items()})
    return with_args(doc, helps) + f"Returns:\n    The image ({size}x{size} PNG).\n"
