"""The one registry of model sizes: training, tests and benchmarks all build models from here.

'emoji' is the shipped model (sized to train in a few hours on 2 CPU cores; see weights/README.md);
'tiny' is a complete two-stage pipeline small enough for unit tests and smoke runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Optional

import torch

from .config import TransformerConfig, VQConfig

BASE_SIZE, SUPERRES_SIZE = 32, 64


@dataclass
class Preset:
    """The configs of every component of a two-stage pipeline."""

    vq: VQConfig
    base: TransformerConfig
    superres: TransformerConfig
    base_critic: TransformerConfig
    superres_critic: TransformerConfig


def _emoji() -> tuple[VQConfig, dict, dict]:
    # Space-to-depth stem: convolutions at 32 and 16 px of a 64 px image (see VQConfig).
    vq = VQConfig(base_channels=64, channel_mult=(1, 2), res_blocks=1, mid_blocks=2, codebook_size=1024,
                  code_dim=32, space_to_depth=2)
    # The base stage must tell ~3,800 named emoji apart from a caption: depth and width for that.
    gen = dict(dim=320, depth=6, heads=5, dim_head=64, ff_mult=4, text_pooled=True)
    # Super-res is a local task once each position sees its low-res parent (cond_spatial).
    sr = dict(dim=192, depth=3, heads=4, dim_head=48, ff_mult=4, text_pooled=True, cond_spatial=True)
    return vq, gen, sr


def _tiny() -> tuple[VQConfig, dict, dict]:
    vq = VQConfig(base_channels=8, channel_mult=(1, 2), res_blocks=1, mid_blocks=1, codebook_size=32, code_dim=8,
                  space_to_depth=2)
    gen = dict(dim=32, depth=2, heads=2, dim_head=16, ff_mult=2, text_pooled=True)
    return vq, gen, dict(gen, cond_spatial=True)


# Each preset gives the tokenizer and the two generators' shapes. A critic is shaped like its
# generator, so that its training starts from the generator's weights (`muse.train`): a small critic
# trained from scratch learned little more than the share of wrong tokens (weights/README.md). It also
# reads the generator's log-probability of each token (`confidence_input`), so it starts ranking as
# confidence sampling does and learns only what confidence misses.
PRESETS: dict[str, Callable[[], tuple[VQConfig, dict, dict]]] = {"emoji": _emoji, "tiny": _tiny}


def make_preset(name: str, text_dim: int = 384) -> Preset:
    """The named preset's configs, for a text encoder of width `text_dim`."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    vq, gen, sr = PRESETS[name]()
    # the tiny preset's critics stay plain: its seeded weights draw the test suite's reference images
    critic = {"confidence_input": True} if name == "emoji" else {}
    f = vq.downsample
    base_seq, sr_seq = (BASE_SIZE // f) ** 2, (SUPERRES_SIZE // f) ** 2
    common = dict(num_tokens=vq.codebook_size, text_dim=text_dim)
    return Preset(
        vq=vq,
        base=TransformerConfig(seq_len=base_seq, **common, **gen),
        superres=TransformerConfig(seq_len=sr_seq, cond_seq_len=base_seq, **common, **sr),
        base_critic=TransformerConfig(seq_len=base_seq, kind="critic", **common, **gen, **critic),
        superres_critic=TransformerConfig(seq_len=sr_seq, cond_seq_len=base_seq, kind="critic", **common, **sr,
                                          **critic),
    )


def build_pipeline(name: str, text_encoder: Any, seed: int = 0, defaults: Optional[dict] = None):
    """A complete pipeline of the named preset with random weights drawn from `seed` (tests, smoke runs)."""
    from .pipeline import MusePipeline, PipelineConfig
    from .transformer import MaskedTransformer
    from .vq import VQModel

    preset = make_preset(name, text_encoder.dim)
    torch.manual_seed(seed)  # components are built in this order, so a seed always gives the same weights
    vq = VQModel(preset.vq)
    base, base_critic = MaskedTransformer(preset.base), MaskedTransformer(preset.base_critic)
    superres, superres_critic = MaskedTransformer(preset.superres), MaskedTransformer(preset.superres_critic)
    return MusePipeline(vq, base, text_encoder, superres, base_critic, superres_critic,
                        PipelineConfig(base_size=BASE_SIZE, superres_size=SUPERRES_SIZE, defaults=defaults or {}))
