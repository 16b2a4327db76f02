"""aMUSEd (amused/amused-256, amused/amused-512: diffusers-format MUSE weights) through muse's sampler,
streaming and playground. Needs the optional extra `.[amused]` (diffusers); nothing here imports it
until an aMUSEd model is loaded or made. The weights are under the OpenRAIL++-M licence, not muse's, and
are never shipped with this repository."""

from __future__ import annotations

from .components import PalettePreview
from .load import AMUSED_DEFAULTS, LICENSE, PUBLIC_MODELS, assumed_summary, describe_amused, is_amused_source
from .options import AmusedOptions
from .pipeline import AmusedPipeline, load_amused
from .tiny import make_tiny_amused

__all__ = ["AMUSED_DEFAULTS", "LICENSE", "PUBLIC_MODELS", "assumed_summary", "describe_amused", "is_amused_source",
           "AmusedPipeline", "AmusedOptions", "PalettePreview", "load_amused", "make_tiny_amused"]
