"""The one settings schema: every generation setting's name, default, limits, label and help, declared once.

Each field of `SamplerSettings` (how to decode) and `GenerationSettings` (a whole request) carries its
`Setting` in its metadata. `SCHEMA` collects them; the dataclasses validate with it, and the
playground's sliders, its tighter limits and the command line's options are generated from it
(`Setting.check`, with the same user-facing messages everywhere). Each setting also records the groups
it belongs to (`Setting.groups`: the page, the critic, side by side, aMUSEd), from which every list of
setting names is drawn (`grouped`).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional, Union

from .schedules import SCHEDULES, ScheduleLike

MAX_IMAGES = 16  # per request: prompts x num_images
MAX_SEED = 2**63 - 1


# The groups a setting may belong to (`Setting.groups`), each with the setting's place in it: the order
# in which the group's settings are shown and taken (API clients may pass them by position).
PAGE = "page"  # a control of the playground and a parameter of its request endpoints
CRITIC = "critic"  # acts only through a token critic: offered for a model with one
SUPERRES = "superres"  # acts only through a super-res stage: offered for a model with one
AMUSED = "amused"  # aMUSEd's own settings: offered for the models that take them
COLUMN = "column"  # set by each side-by-side column on its own
SHARED = "shared"  # set once for both side-by-side columns
GROUPS = (PAGE, CRITIC, SUPERRES, AMUSED, COLUMN, SHARED)
# The groups that say what a model must have for the setting to be offered.
FEATURES = (CRITIC, SUPERRES, AMUSED)

Groups = Union[Mapping[str, int], tuple[tuple[str, int], ...]]


class SettingError(ValueError):
    """A setting out of its range or of the wrong type; the message names the setting."""


def _fmt(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else f"{x:g}"


def shown(value: Any, limit: int = 40) -> str:
    """repr of a rejected value, cut short: an error message must not echo a 100,000-character input."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "…"


@dataclass(frozen=True)
class Setting:
    """One setting: its type, default and limits, and the words a user sees for it."""

    name: str
    kind: type  # int, float, bool or str
    default: Any
    lo: Optional[float] = None
    hi: Optional[float] = None
    below_hi: bool = False  # the upper limit itself is excluded
    choices: tuple[str, ...] = ()
    callables: bool = False  # a callable is accepted too (a custom schedule, from Python only)
    optional: bool = False  # None is accepted (seed: draw one)
    label: str = ""
    help: str = ""
    step: Optional[float] = None  # slider resolution
    groups: Groups = ()  # {group: place in it}; kept as sorted (group, place) pairs

    def __post_init__(self) -> None:
        object.__setattr__(self, "groups", tuple(sorted(dict(self.groups).items())))

    def place(self, group: str) -> Optional[int]:
        """The setting's place in `group` (None: not in it)."""
        return dict(self.groups).get(group)

    def needs(self) -> frozenset[str]:
        """What a model must have for the setting to be offered (`FEATURES`)."""
        return frozenset(group for group, _ in self.groups if group in FEATURES)

    def limits(self, limits: Optional[tuple[float, float]] = None) -> tuple[float, float]:
        """The range in force: `limits` (a caller's tighter range, e.g. the playground's) or the schema's."""
        return limits if limits is not None else (self.lo, self.hi)

    def check(self, value: Any, limits: Optional[tuple[float, float]] = None, coerce: bool = False) -> Any:
        """`value` checked (and normalised: floats as float) or a SettingError naming the setting.

        coerce: also accept the forms a JSON or form client sends, numbers as text and flags as 0/1
        or "true"/"false" (the playground's API)."""
        if value is None and self.optional:
            return None
        if self.kind is bool:
            return self._flag(value, coerce)
        if self.kind is str:
            if self.callables and callable(value):
                return value
            if isinstance(value, str) and value in self.choices:
                return value
            extra = " or a callable" if self.callables else ""
            raise SettingError(f"{self.name} must be one of {', '.join(self.choices)}{extra}; got {shown(value)}.")
        return self._number(value, *self.limits(limits), coerce)

    def _number(self, value: Any, lo: float, hi: float, coerce: bool) -> Any:
        integer = self.kind is int
        kind = "a whole number" if integer else "a number"
        top = f"below {_fmt(hi)}" if self.below_hi and hi == self.hi else _fmt(hi)
        message = f"{self.name} must be {kind} from {_fmt(lo)} to {top}, got {shown(value)}."
        if coerce and isinstance(value, str):
            try:
                value = float(value.strip())
            except ValueError:
                raise SettingError(message) from None
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise SettingError(message)
        if integer and (float(value) != int(value) or (isinstance(value, float) and not coerce)):
            raise SettingError(message)
        above = value >= hi if self.below_hi and hi == self.hi else value > hi
        if value < lo or above:
            raise SettingError(message)
        return int(value) if integer else float(value)

    def _flag(self, value: Any, coerce: bool) -> bool:
        if isinstance(value, bool):
            return value
        if coerce and value in (0, 1) and not isinstance(value, float):
            return bool(value)
        if coerce and isinstance(value, str) and value.strip().lower() in ("true", "false"):
            return value.strip().lower() == "true"
        raise SettingError(f"{self.name} must be true or false, got {shown(value)}.")


def setting(default: Any, *, kind: Optional[type] = None, **spec: Any) -> Any:
    """A dataclass field that carries its `Setting` (name and kind filled in from the field)."""
    return field(default=default, metadata={"setting": dict(spec, kind=kind or type(default))})


def grouped(settings: Mapping[str, Setting], group: str, offered: Optional[frozenset[str]] = None) -> tuple[str, ...]:
    """The names of `settings` in `group`, in their places there; with `offered` (the `FEATURES` a model
    has), only those it offers."""
    chosen = [s for s in settings.values() if s.place(group) is not None and (offered is None or s.needs() <= offered)]
    return tuple(s.name for s in sorted(chosen, key=lambda s: s.place(group)))


def _schema_of(cls: type) -> dict[str, Setting]:
    return {f.name: Setting(name=f.name, default=f.default, **f.metadata["setting"])
            for f in dataclasses.fields(cls) if "setting" in f.metadata}


def _validate(obj: Any) -> None:
    """Check every field of a frozen settings dataclass against the schema, storing normalised values."""
    for name, spec in _schema_of(type(obj)).items():
        object.__setattr__(obj, name, spec.check(getattr(obj, name)))


# How the scale moves over a stage's steps. "constant": cond_scale at every step (classifier-free
# guidance as published). "fading": 1 + (cond_scale - 1) x the share of the stage's tokens still masked,
# per row: full guidance while the caption alone decides, none by the last steps. Once most tokens are
# known the unconditional prediction already finds the true token often, and a constant scale pushes
# away from it (the model card's guidance figures).
GUIDANCE_SCHEDULES = ("constant", "fading")

# Which masked tokens a step keeps (`muse.orders`): "confidence", the model's probability of its sample
# with MaskGIT's annealed Gumbel noise; "critic", the token critic's ranking (MUSE); "halton", a fixed 2-D
# Halton order from a random offset (Besnier et al., ICLR 2025); "random", a random order drawn per image
# (the baseline of MaskGIT's ablation).
ORDERS = ("confidence", "critic", "halton", "random")


@dataclass(frozen=True)
class SamplerSettings:
    """How to decode one stage (`muse.sampling.decode`); names follow muse-maskgit-pytorch's `generate`."""

    timesteps: int = setting(12, groups={PAGE: 0, COLUMN: 6}, lo=1, hi=256, step=1, label="Timesteps",
                             help="decoding steps per stage: more steps reveal fewer tokens at a time "
                                  "(slower, often cleaner)")
    temperature: float = setting(1.0, groups={PAGE: 2, COLUMN: 5}, lo=0, hi=100, step=0.05, label="Temperature",
                                 help="randomness of each predicted token (annealed to 0 by the last step; under the "
                                      "halton order divided by a ramp from 1 to 1.2 instead); 0 = always the likeliest")
    topk_filter_thres: float = setting(0.9, groups={PAGE: 4}, lo=0, hi=1, below_hi=True, step=0.01,
                                       label="Top-k threshold",
                                       help="drops the least likely codes before sampling: 0.9 keeps the top 10 %")
    schedule: ScheduleLike = setting("cosine", groups={PAGE: 6, COLUMN: 3}, choices=tuple(SCHEDULES), callables=True,
                                     label="Schedule",
                                     help="the curve of masked tokens per step (see the schedule plot): "
                                          "cosine reveals few tokens early")
    critic_noise_scale: float = setting(1.0, groups={PAGE: 3, CRITIC: 1, COLUMN: 1}, lo=0, hi=100, step=0.05,
                                        label="Critic noise",
                                        help="noise added to the token critic's scores when choosing what to "
                                             "keep: more = more varied choices. It acts only when the critic ranks")
    order: str = setting("confidence", groups={PAGE: 5, COLUMN: 0}, choices=ORDERS, label="Unmasking order",
                         help="which sampled tokens each step keeps: confidence = the model's likeliest "
                              "(with choice noise), critic = the token critic's ranking, halton = spread "
                              "evenly over the image in a fixed order, random = a random order")
    choice_temperature: float = setting(4.5, lo=0, hi=100, step=0.1, label="Choice temperature",
                                        help="MaskGIT's Gumbel noise on the keep choice without a critic, "
                                             "annealed to 0")
    can_remask_prev_masked: bool = setting(False, label="Remask earlier choices",
                                           help="let a later step mask again a token fixed earlier")

    def __post_init__(self) -> None:
        _validate(self)


@dataclass(frozen=True)
class GenerationSettings(SamplerSettings):
    """Everything a request may set (the sampler's settings and the pipeline's); validated on creation."""

    cond_scale: float = setting(3.0, groups={PAGE: 1, COLUMN: 4}, lo=0, hi=100, step=0.1, label="Guidance (cond_scale)",
                                help="classifier-free guidance: 0 ignores the prompt, 1 is plain conditioning, "
                                     "higher follows it harder")
    guidance_schedule: str = setting("constant", groups={PAGE: 12, COLUMN: 7}, choices=GUIDANCE_SCHEDULES,
                                     label="Guidance schedule",
                                     help="constant: cond_scale at every step; fading: from cond_scale while "
                                          "everything is masked down to 1 (plain conditioning) as tokens are "
                                          "fixed, since guidance helps least once much of the image is known")
    use_critic: bool = setting(True, label="Use the token critic",
                               help="the older spelling of order=critic: with the default order (confidence) "
                                    "the token critic ranks where the model has one; another order wins")
    superres: bool = setting(True, groups={PAGE: 7, SUPERRES: 0, SHARED: 2}, label="Super-res stage",
                             help="run the second (super-res) stage after the base stage")
    seed: Optional[int] = setting(None, groups={PAGE: 8, SHARED: 0}, kind=int, lo=0, hi=MAX_SEED, optional=True,
                                  label="Seed",
                                  help="the same seed and settings give the same images; none draws one")
    num_images: int = setting(1, groups={PAGE: 10}, lo=1, hi=MAX_IMAGES, step=1, label="Number of images",
                              help="images per prompt")

    def sampler(self) -> SamplerSettings:
        """The part the sampler reads."""
        return SamplerSettings(**{f.name: getattr(self, f.name) for f in dataclasses.fields(SamplerSettings)})


SCHEMA: dict[str, Setting] = _schema_of(GenerationSettings)

# The sampler rules a model may be decoded by (`muse.sampler_rules` implements them; it imports this module).
SAMPLERS = ("muse", "amused")
MAX_MICRO = 8192  # pixels: the largest size or crop offset aMUSEd's micro-conditioning is told


@dataclass(frozen=True)
class AmusedSettings:
    """aMUSEd's settings beyond the common ones: its sampler preset and its micro-conditioning (what the
    model is told of the training image it should resemble). `muse.amused.AmusedOptions` checks its
    options with these; the playground builds its controls from them for models that take them."""

    sampler: str = setting("amused", groups={PAGE: 13, AMUSED: 0, COLUMN: 2}, choices=SAMPLERS, label="Sampler",
                           help="amused: aMUSEd's own rules, draw for draw (the images of diffusers' AmusedPipeline); "
                                "muse: our MaskGIT sampler (annealed temperature, top-k, Gumbel keep noise). "
                                "Under amused the temperature is a plain softmax temperature, not annealed")
    aesthetic_score: float = setting(6.0, groups={PAGE: 14, AMUSED: 1, SHARED: 3}, lo=0, hi=10, step=0.1,
                                     label="Aesthetic score",
                                     help="micro-conditioning: the LAION aesthetic score (0-10) the model is told "
                                          "the image has; aMUSEd's default is 6")
    micro_width: Optional[int] = setting(None, groups={PAGE: 15, AMUSED: 2, SHARED: 4}, kind=int, lo=0, hi=MAX_MICRO,
                                         optional=True, label="Original width",
                                         help="micro-conditioning: the width in pixels the model is told the "
                                              "original image had; aMUSEd's default is the output size")
    micro_height: Optional[int] = setting(None, groups={PAGE: 16, AMUSED: 3, SHARED: 5}, kind=int, lo=0, hi=MAX_MICRO,
                                          optional=True, label="Original height",
                                          help="micro-conditioning: the height in pixels the model is told the "
                                               "original image had; aMUSEd's default is the output size")
    crop_top: int = setting(0, groups={PAGE: 17, AMUSED: 4, SHARED: 6}, lo=0, hi=MAX_MICRO, label="Crop top",
                            help="micro-conditioning: the top of the crop the model is told the image was cut "
                                 "from, in pixels; aMUSEd's default 0 (uncropped)")
    crop_left: int = setting(0, groups={PAGE: 18, AMUSED: 5, SHARED: 7}, lo=0, hi=MAX_MICRO, label="Crop left",
                             help="micro-conditioning: the left of the crop the model is told the image was cut "
                                  "from, in pixels; aMUSEd's default 0 (uncropped)")

    def __post_init__(self) -> None:
        _validate(self)
        if (self.micro_width is None) != (self.micro_height is None):
            raise SettingError(f"micro_width and micro_height go together: give both or neither (neither: the "
                               f"output size), got {self.micro_width} and {self.micro_height}.")

    def options(self) -> dict[str, Any]:
        """The keyword arguments of an aMUSEd pipeline's requests (`muse.amused.AmusedOptions`)."""
        size = None if self.micro_width is None else (self.micro_width, self.micro_height)
        return {"sampler": self.sampler, "aesthetic_score": self.aesthetic_score,
                "crop_coord": (self.crop_top, self.crop_left), "micro_size": size}


AMUSED_SCHEMA: dict[str, Setting] = _schema_of(AmusedSettings)


def known_settings(values: dict[str, Any]) -> dict[str, Any]:
    """The entries of `values` that name a setting (a weights folder's tuned defaults may hold others)."""
    return {k: v for k, v in values.items() if k in SCHEMA}


__all__ = ["Setting", "SettingError", "SCHEMA", "SamplerSettings", "GenerationSettings", "setting", "MAX_IMAGES",
           "AmusedSettings", "AMUSED_SCHEMA", "SAMPLERS", "grouped", "PAGE", "CRITIC", "SUPERRES", "AMUSED", "COLUMN",
           "SHARED", "GROUPS", "FEATURES", "ORDERS", "GUIDANCE_SCHEDULES"]
