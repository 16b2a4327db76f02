"""The request options aMUSEd has beyond muse's settings: its sampler rules and its micro-conditioning."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from ..settings import AMUSED_SCHEMA, MAX_MICRO, SettingError, shown

DEFAULT_AESTHETIC_SCORE = 6.0
DEFAULT_CROP_COORD = (0, 0)
EXTRA_OPTIONS = ("sampler", "aesthetic_score", "crop_coord", "micro_size")


@dataclass(frozen=True)
class AmusedOptions:
    """The request options aMUSEd has beyond muse's settings schema, checked by their own schema
    (`muse.settings.AMUSED_SCHEMA`: the same limits and messages as the playground's controls)."""

    sampler: str = "amused"  # sampler rules: "amused" (aMUSEd's, exact) or "muse" (our MaskGIT rules)
    aesthetic_score: float = DEFAULT_AESTHETIC_SCORE  # LAION aesthetic score the model is asked for
    crop_coord: tuple[int, int] = DEFAULT_CROP_COORD  # (top, left) crop the model is told the image had
    micro_size: Optional[tuple[int, int]] = None  # (width, height) it is told; None: the output size

    def __post_init__(self) -> None:
        for name in ("sampler", "aesthetic_score"):
            object.__setattr__(self, name, AMUSED_SCHEMA[name].check(getattr(self, name)))
        pairs = {"crop_coord": ("crop_top", "crop_left"), "micro_size": ("micro_width", "micro_height")}
        for name, (first, second) in pairs.items():
            value = getattr(self, name)
            if value is None and name == "micro_size":
                continue
            if not isinstance(value, (tuple, list)) or len(value) != 2:
                raise SettingError(f"{name} must be two whole numbers ({first}, {second}) from 0 to {MAX_MICRO}, "
                                   f"got {shown(value)}.")
            try:
                value = (AMUSED_SCHEMA[first].check(value[0]), AMUSED_SCHEMA[second].check(value[1]))
            except SettingError as err:
                raise SettingError(f"{name}: {err}") from None
            if None in value:
                raise SettingError(f"{name} must be two whole numbers, got {shown(value)}.")
            object.__setattr__(self, name, value)
