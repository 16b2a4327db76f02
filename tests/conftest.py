"""Shared fixtures: tiny random models for every path (fast, CPU), built once per session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from muse.config import TransformerConfig, VQConfig  # noqa: E402
from muse.pipeline import MusePipeline, PipelineConfig  # noqa: E402
from muse.text import TextEncoder  # noqa: E402
from muse.transformer import MaskedTransformer  # noqa: E402
from muse.vq import VQModel  # noqa: E402

TINY_VQ = VQConfig(base_channels=8, channel_mult=(1, 2), res_blocks=1, mid_blocks=1, codebook_size=32, code_dim=8,
                   space_to_depth=2)
TINY_GEN = dict(num_tokens=32, dim=32, depth=2, heads=2, dim_head=16, ff_mult=2, text_dim=384, text_pooled=True)
TINY_SR = dict(TINY_GEN, seq_len=256, cond_seq_len=64, cond_spatial=True)  # the shipped super-res layout


def make_tiny_pipeline(text_encoder: TextEncoder, seed: int = 0) -> MusePipeline:
    """A complete two-stage pipeline with critics, random weights."""
    torch.manual_seed(seed)
    vq = VQModel(TINY_VQ)
    base = MaskedTransformer(TransformerConfig(seq_len=64, **TINY_GEN))
    base_critic = MaskedTransformer(TransformerConfig(seq_len=64, kind="critic", **TINY_GEN))
    superres = MaskedTransformer(TransformerConfig(**TINY_SR))
    superres_critic = MaskedTransformer(TransformerConfig(kind="critic", **TINY_SR))
    return MusePipeline(vq, base, text_encoder, superres, base_critic, superres_critic,
                        PipelineConfig(defaults={"timesteps": 4}))


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
