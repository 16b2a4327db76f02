"""The page model: what the page offers for the served model (its controls, their ranges and starting
values, its sizes) and the names of what a request updates on the page.

Every list of setting names is drawn from the groups the schema records (`muse.settings.grouped`);
the playground's own switches are `Setting`s too (`PAGE_SETTINGS`)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Optional

from ..amused.load import assumed_summary, is_amused_source
from ..config import TransformerConfig, VQConfig
from ..hub import WeightsError, read_config
from ..load import describe
from ..loader import PipelineConfig, PipelineSummary, local_folder
from ..orders import resolve_order
from ..token_pipeline import TokenPipeline
from ..settings import (AMUSED, AMUSED_SCHEMA, COLUMN, CRITIC, PAGE, SCHEMA, SHARED, SUPERRES,
                        GenerationSettings, Setting, grouped, known_settings)
from .model import MODEL

# The playground's limits (the library accepts more; the page keeps requests quick).
LIMITS: dict[str, tuple[float, float]] = {
    "timesteps": (1, 64), "cond_scale": (0.0, 10.0), "temperature": (0.0, 3.0), "critic_noise_scale": (0.0, 3.0),
    "topk_filter_thres": (0.0, 0.99), "num_images": (1, 4), "seed": (0, 2**32 - 1)}
MAX_PROMPT_CHARS = 100_000  # longer text is cut here; the encoder then keeps its first max_length tokens
DISPLAY_SIZE = 256  # each image on the page, nearest-upscaled (a larger model's at its own size: `display_size`)
# Each streamed step's canvas and prediction: half the display size, which the page doubles (nearest,
# CSS), pixel for pixel the picture a DISPLAY_SIZE one would be (token outlines included), at a quarter
# of the pixels to encode and send for every step.
STREAM_SIZE = DISPLAY_SIZE // 2
# The inpainting editor's canvas (every upload is fitted into it), so its brush, sized in canvas pixels,
# is the same share of every image: a diameter of 1/8 of the width (adjustable in the editor).
EDIT_SIZE = 256
BRUSH_RADIUS = EDIT_SIZE // 16
TIMELINE_SIZE = 96

# The page's own switches (no library setting), checked, described and grouped like the schema's.
PAGE_SETTINGS: dict[str, Setting] = {s.name: s for s in (
    Setting("randomize_seed", bool, True, label="Randomize seed", help="draw a new seed for every run",
            groups={PAGE: 9, SHARED: 1}),
    Setting("previews", bool, True, label="Previews (off = faster)",
            help="off: only the final image is drawn, which is faster", groups={PAGE: 11}))}
# Every setting the page may show: a custom schedule (a callable) is for Python callers, so the page's
# messages name only the choices.
SETTINGS: dict[str, Setting] = {**{name: replace(s, callables=False) for name, s in SCHEMA.items()},
                                **PAGE_SETTINGS, **AMUSED_SCHEMA}
# Parameters the endpoints no longer take: what replaces each (a parameter, and the value that means what
# the old one's True did), so that a client sending one is told what to send.
RENAMED = {"use_critic": ("order", "critic")}
NEGATIVE_PROMPT_HELP = "what guidance steers away from (replaces the empty prompt of classifier-free guidance)"

MUSE_FEATURES = frozenset({CRITIC, SUPERRES})  # a muse model with both stages and a critic
# The controls of such a model, in the order the page shows them and the endpoints take them (API clients
# may pass them by position); each endpoint's parameters after its image and prompt (the super-res
# endpoint has no `superres`).
CONTROLS = grouped(SETTINGS, PAGE, MUSE_FEATURES)
REQUEST_SETTINGS = ("negative_prompt", *CONTROLS)
CRITIC_CONTROLS = grouped(SETTINGS, CRITIC)  # shown only for a model with a token critic
AMUSED_CONTROLS = grouped(SETTINGS, AMUSED)  # aMUSEd's own settings (`muse.settings.AmusedSettings`)
COMPARE_SETTINGS = grouped(SETTINGS, COLUMN, MUSE_FEATURES)  # what each side-by-side column sets on its own

# What a request updates on the page. An update is a dict keyed by these names; a name it leaves out
# keeps its value, and None clears it.
# step_tokens, step_info and scrub show one step (the latest, or the one scrubbed to); replay is the key
# the step slider replays the run by (`muse.playground.replay.REPLAYS`).
OUTPUTS = ("canvas", "prediction", "status", "seed", "before_after", "timeline", "reveal_map", "heat_map",
           "schedule_plot", "animation", "files", "step_tokens", "step_info", "scrub", "replay")
# What showing one step of a run updates (the step slider and the play button).
STEP_OUTPUTS = ("canvas", "prediction", "step_tokens", "step_info", "scrub")
PICTURE_OUTPUTS = ("timeline", "reveal_map", "heat_map", "schedule_plot")  # `decoding_pictures`, after the result
Update = dict[str, Any]
# An update key, not an output: True on an update whose pictures are passing frames of a run that goes on
# (the next update replaces them), False or absent on a result. The page may send passing frames inline,
# in the update itself, instead of as files the browser then fetches one by one.
PASSING = "passing"


@dataclass(frozen=True)
class StepSlider:
    """The step slider's value: the step shown (1-based across the run's stages) and the run's number of steps."""

    value: int
    maximum: int


def weights_summary() -> PipelineSummary:
    """What the weights' configs say, without loading them. A source that is not a readable local
    folder (a Hub repo id before the first request) reads as the configs' own defaults (aMUSEd's for
    an aMUSEd id)."""
    source = MODEL.source()
    try:
        return describe(source)
    except (WeightsError, OSError):
        if is_amused_source(source):
            return assumed_summary(source)
        return PipelineSummary(PipelineConfig(), VQConfig().downsample, has_superres=True)


def _has_critic(source: Optional[str]) -> bool:
    """Whether a muse folder ranks tokens with a critic (a critic component, or the generator's own critic
    head), read from its configs; one that cannot be read is assumed to (the controls stay)."""
    try:
        folder = local_folder(source)
        return (folder / "base_critic").is_dir() or read_config(folder / "base", TransformerConfig).self_critic
    except (WeightsError, OSError):
        return True


@dataclass(frozen=True)
class PageModel:
    """What the page offers for the served model, read from its configs before it loads: its stages and
    sizes, whether it has a token critic, and the settings of its own it takes (aMUSEd's sampler preset
    and micro-conditioning). Controls of a stage or critic the model lacks are not shown or taken."""

    summary: PipelineSummary
    critic: bool = True
    options: tuple[str, ...] = ()  # names of its own settings (AMUSED_CONTROLS)
    family: str = "muse"  # "muse" or "amused"

    @property
    def superres(self) -> bool:
        return self.summary.has_superres

    @property
    def features(self) -> frozenset[str]:
        """The groups of settings that need something of the model (`muse.settings.FEATURES`) it offers."""
        return frozenset(group for group, present in ((CRITIC, self.critic), (SUPERRES, self.superres),
                                                      (AMUSED, bool(self.options))) if present)

    def output_size(self) -> int:
        return self.summary.output_size(True)

    def choices(self, name: str) -> tuple[str, ...]:
        """The choices the page offers for a setting with choices: the unmasking orders this model can rank
        by (the critic's only with a critic), else the setting's own."""
        choices = tuple(control(name).choices)
        if name == "order" and not self.critic:
            return tuple(order for order in choices if order != "critic")
        return choices

    def controls(self) -> tuple[str, ...]:
        """The settings the page shows and the endpoints take, in order."""
        return grouped(SETTINGS, PAGE, self.features)

    def request_settings(self, superres: bool = True) -> tuple[str, ...]:
        """An endpoint's parameters after its image and prompt (`superres` False: the super-res endpoint's)."""
        return tuple(name for name in ("negative_prompt", *self.controls()) if superres or name != "superres")

    def compare_settings(self) -> tuple[str, ...]:
        """What each side-by-side column sets on its own: the critic where there is one, the sampler preset
        where the model has one, then the schedule, guidance, temperature and steps."""
        return grouped(SETTINGS, COLUMN, self.features)

    def compare_shared(self) -> tuple[str, ...]:
        """The side-by-side settings shared by both columns (the main settings' values)."""
        return ("negative_prompt", *grouped(SETTINGS, SHARED, self.features))

    def describe(self) -> str:
        """One line on what is served, for the page's header."""
        if self.superres:
            return (f"every decoding step of the base ({self.summary.image_size('base')} px) and super-res "
                    f"({self.summary.image_size('superres')} px) stages is drawn as it is computed.")
        return f"every decoding step of its one {self.output_size()} px stage is drawn as it is computed."

    def missing(self) -> str:
        """What this model lacks that the page's controls would set, as a note ('' when nothing)."""
        lacks = [what for what, present in (("super-res stage", self.superres), ("token critic", self.critic))
                 if not present]
        if not lacks:
            return ""
        whose = "their" if len(lacks) > 1 else "its"
        note = f"This model has no {' and no '.join(lacks)}: {whose} controls are not shown"
        return note + (", and the unmasking order offers no critic." if not self.critic else ".")


def page_model() -> PageModel:
    """The served model (MUSE_WEIGHTS) as the page sees it: from the loaded model, else from its configs."""
    source = MODEL.source()
    pipe = MODEL.loaded()
    summary = pipe.summary if pipe is not None else weights_summary()
    if is_amused_source(source):
        return PageModel(summary, critic=False, options=AMUSED_CONTROLS, family="amused")
    critic = pipe.uses_critic(True) if pipe is not None else _has_critic(source)
    return PageModel(summary, critic=critic)


def display_size(pipe: Optional[TokenPipeline] = None) -> int:
    """Side in pixels of each image on the page: DISPLAY_SIZE, or the model's own output size when larger
    (aMUSEd-512's images are shown at 512 px, not shrunk). `pipe`: the model (default: the loaded one)."""
    pipe = pipe or MODEL.loaded()
    size = pipe.output_size(True) if pipe is not None else weights_summary().output_size(True)
    return max(DISPLAY_SIZE, size)


def token_counts(superres: bool = True) -> dict[str, int]:
    """Tokens each stage generates: from the model once loaded, else from its configs."""
    pipe = MODEL.loaded()
    return pipe.token_counts(superres) if pipe is not None else weights_summary().token_counts(superres)


def critic_noise_acts(order: Any) -> bool:
    """Whether the critic noise acts under this unmasking order: only when the token critic ranks (the page
    disables its control otherwise)."""
    return order == "critic"


def control(name: str) -> Setting:
    """The setting behind a control of the page: the schema's, aMUSEd's or one of the page's own switches."""
    return SETTINGS[name]


def limits(name: str) -> tuple[float, float]:
    """A numeric control's range on the page: the playground's tighter one, else its schema's."""
    return LIMITS.get(name) or control(name).limits()


def page_defaults(model: Optional[PageModel] = None) -> dict[str, Any]:
    """Every request setting's starting value: the weights' tuned defaults (else the schema's), within
    the playground's limits; with the model's own settings (aMUSEd's: its defaults, the original size
    its output size). The unmasking order is what the weights' defaults rank by on this model (their
    `order`, with `use_critic` read as `muse.orders.resolve_order` says): the page has no `use_critic`."""
    model = model or page_model()
    tuned = GenerationSettings(**known_settings(model.summary.config.defaults))  # normalised
    values: dict[str, Any] = {"negative_prompt": ""}
    for name in (*CONTROLS, *model.options):
        values[name] = getattr(tuned, name) if name in SCHEMA else control(name).default
        if name == "order":
            values[name] = resolve_order(tuned.order, tuned.use_critic, model.critic)
        if name in LIMITS:
            lo, hi = LIMITS[name]
            # A seed of None (draw one) starts at the lowest: "Randomize seed" is on by default.
            values[name] = lo if values[name] is None else min(max(values[name], lo), hi)
        if name in ("micro_width", "micro_height"):  # aMUSEd tells the model the output size by default
            values[name] = model.output_size()
    return values
