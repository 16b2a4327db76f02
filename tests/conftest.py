"""Shared fixtures: tiny random models for every path (fast, CPU), built once per session.

The tiny model is the registry's 'tiny' preset (`muse.presets`), the same one `python -m muse.train
--preset tiny` trains: defined once, there.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from muse.config import TransformerConfig  # noqa: E402
from muse.pipeline import MusePipeline  # noqa: E402
from muse.presets import build_pipeline, make_preset  # noqa: E402
from muse.text import TextEncoder  # noqa: E402

TINY = make_preset("tiny")  # for the default text encoder's width (384)


def _set_fields(config: TransformerConfig) -> dict:
    """The fields `config` sets away from their defaults, but its sequence length."""
    return {f.name: getattr(config, f.name) for f in dataclasses.fields(config)
            if f.name != "seq_len" and getattr(config, f.name) != f.default}


# The tiny generator's sizes, for tests that build variants: TransformerConfig(seq_len=..., kind=..., **TINY_GEN).
TINY_GEN = _set_fields(TINY.base)


def make_tiny_pipeline(text_encoder: TextEncoder, seed: int = 0) -> MusePipeline:
    """A complete two-stage pipeline with critics, random weights drawn from `seed`."""
    return build_pipeline("tiny", text_encoder, seed=seed, defaults={"timesteps": 4})


@pytest.fixture(scope="session")
def text_encoder() -> TextEncoder:
    return TextEncoder()


@pytest.fixture(scope="session")
def tiny_pipe(text_encoder) -> MusePipeline:
    return make_tiny_pipeline(text_encoder)


@pytest.fixture(scope="session")
def tiny_weights(tiny_pipe, tmp_path_factory) -> Path:
    """A saved tiny pipeline folder, as `load_pipeline` and the app read it."""
    return tiny_pipe.save_pretrained(tmp_path_factory.mktemp("tiny_weights"))
