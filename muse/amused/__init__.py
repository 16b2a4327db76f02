"""aMUSEd (amused/amused-256, amused/amused-512: diffusers-format MUSE weights) through muse's sampler,
streaming and playground. Needs the optional extra `.[amused]` (diffusers); nothing here imports it
until an aMUSEd model is loaded. The weights are under the OpenRAIL++-M licence, not muse's, and are
never shipped with this repository."""

from __future__ import annotations

from typing import Any

from .load import AMUSED_DEFAULTS, LICENSE, PUBLIC_MODELS, assumed_summary, describe_amused, is_amused_source

_LAZY = {"AmusedPipeline": "pipeline", "AmusedOptions": "pipeline", "PalettePreview": "pipeline",
         "load_amused": "pipeline", "make_tiny_amused": "tiny"}


def __getattr__(name: str) -> Any:  # the pipeline imports muse.pipeline, which imports this package's loader
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["AMUSED_DEFAULTS", "LICENSE", "PUBLIC_MODELS", "assumed_summary", "describe_amused", "is_amused_source",
           *_LAZY]
