"""Which model family a source holds, loaded or described: MUSE's folders (`muse.loader`,
`muse.pipeline.MusePipeline`) or aMUSEd's in diffusers layout (`muse.amused`). The one place above both."""

from __future__ import annotations

from typing import Optional, Union

import torch

from .amused.load import describe_amused, is_amused_source
from .amused.pipeline import AmusedPipeline, load_amused
from .hub import PathLike
from .loader import PipelineSummary, describe_muse
from .pipeline import MusePipeline


def load_pipeline(source: Optional[PathLike] = None, device: Union[str, torch.device, None] = None,
                  revision: Optional[str] = None,
                  dtype: Union[str, torch.dtype, None] = "auto") -> Union[MusePipeline, AmusedPipeline]:
    """The shipped model (None), a local folder, or a Hub repo id; aMUSEd weights (a diffusers-layout
    folder, or amused/...) load as a `muse.amused.AmusedPipeline` (needs the [amused] extra)."""
    if is_amused_source(source):
        return load_amused(source, device=device, revision=revision, dtype=dtype)
    return MusePipeline.from_pretrained(source, device=device, revision=revision, dtype=dtype)


def describe(source: Optional[PathLike]) -> PipelineSummary:
    """The shipped weights (None) or a local folder, from its configs alone, without loading a weight
    (a Hub id is not fetched); a WeightsError when they are missing or invalid."""
    return describe_amused(source) if is_amused_source(source) else describe_muse(source)


__all__ = ["load_pipeline", "describe"]
