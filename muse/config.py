"""Typed configs, stored as config.json beside each component's weights.

A config from an untrusted folder is validated before anything is allocated: absurd sizes are
refused with a clear error instead of exhausting memory.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal

# Generous ceilings: far above any model this toolkit trains, far below what would exhaust a host.
MAX_PARAMETERS = 4_000_000_000
MAX_WIDTH = 16_384
MAX_DEPTH = 256
MAX_VOCAB = 1 << 20
MAX_SEQ = 1 << 16


class ConfigError(ValueError):
    """A config.json that cannot describe a valid model."""


def _check_float(cfg: Any, name: str, lo: float, hi: float) -> None:
    value = getattr(cfg, name)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (lo <= value <= hi):  # NaN fails too
        raise ConfigError(f"{type(cfg).__name__}.{name} must be a number in [{lo}, {hi}], got {value!r}")


def _check_int(cfg: Any, name: str, lo: int, hi: int) -> None:
    value = getattr(cfg, name)
    if not isinstance(value, int) or isinstance(value, bool) or not (lo <= value <= hi):
        raise ConfigError(f"{type(cfg).__name__}.{name} must be an integer in [{lo}, {hi}], got {value!r}")


@dataclass
class VQConfig:
    """Convolutional VQ autoencoder: space_to_depth * 2**(len(channel_mult) - 1) downsampling.

    space_to_depth > 1 folds each s x s pixel patch into channels before the first convolution
    (PixelUnshuffle) and unfolds it after the last (PixelShuffle): the convolutions then run at
    1/s of the resolution, s**2 times cheaper, which is what lets a tokenizer train on full 64 px
    images on a CPU.
    """

    in_channels: int = 3
    base_channels: int = 32
    channel_mult: tuple[int, ...] = (1, 2, 4)
    res_blocks: int = 1  # residual blocks per resolution level
    mid_blocks: int = 2  # residual blocks at the token resolution
    codebook_size: int = 512
    code_dim: int = 32  # low-dimensional, l2-normalised code space (ViT-VQGAN factorised codes)
    commitment: float = 0.25
    space_to_depth: int = 1  # 1: convolutions start at full resolution (the first shipped tokenizer)

    def __post_init__(self) -> None:
        self.channel_mult = tuple(self.channel_mult)
        _check_int(self, "in_channels", 1, 16)
        _check_int(self, "space_to_depth", 1, 8)
        _check_int(self, "base_channels", 1, 4096)
        _check_int(self, "res_blocks", 0, 64)
        _check_int(self, "mid_blocks", 0, 64)
        _check_int(self, "codebook_size", 2, MAX_VOCAB)
        _check_int(self, "code_dim", 1, 4096)
        _check_float(self, "commitment", 0.0, 100.0)
        if not (1 <= len(self.channel_mult) <= 6) or not all(
                isinstance(m, int) and 1 <= m * self.base_channels <= MAX_WIDTH for m in self.channel_mult):
            raise ConfigError(f"VQConfig.channel_mult must hold 1-6 positive integers, got {self.channel_mult!r}")
        if self.num_parameters() > MAX_PARAMETERS:
            raise ConfigError(f"config asks for ~{self.num_parameters():,} parameters (limit {MAX_PARAMETERS:,})")

    @property
    def downsample(self) -> int:
        return self.space_to_depth * 2 ** (len(self.channel_mult) - 1)

    def num_parameters(self) -> int:
        widths = [self.base_channels * m for m in self.channel_mult]
        conv = sum(9 * w * w * (2 * self.res_blocks + 1) for w in widths) + 9 * widths[-1] ** 2 * 2 * self.mid_blocks
        stem = 9 * self.in_channels * self.space_to_depth ** 2 * widths[0]
        return 2 * (conv + stem) + self.codebook_size * self.code_dim


@dataclass
class TransformerConfig:
    """Text-conditioned masked transformer over a flattened token grid.

    kind: "generator" (MaskGitTransformer: adds the mask token, predicts ids) or "critic"
    (TokenCritic: one logit per token, "this token is wrong").
    """

    num_tokens: int = 512  # codebook size of the tokenizer
    seq_len: int = 64  # tokens per image (8x8 for 32 px, 16x16 for 64 px)
    dim: int = 256
    depth: int = 6
    heads: int = 4
    dim_head: int = 64
    ff_mult: int = 4
    text_dim: int = 384  # hidden size of the text encoder
    cond_seq_len: int = 0  # conditioning tokens appended to the context (super-res: low-res ids)
    # Super-res: also add each position's low-res parent token (and its 3x3 neighbourhood, through a
    # convolution) to that position's input, aligned in space, instead of only through cross-attention.
    cond_spatial: bool = False
    # One more context token: the caption's mean-pooled, l2-normalised embedding, which is what a
    # sentence encoder such as all-MiniLM-L6-v2 is trained to make similar for paraphrases.
    text_pooled: bool = False
    self_cond: bool = False
    self_critic: bool = False  # an extra "token is wrong" head on the generator's embeddings
    kind: Literal["generator", "critic"] = "generator"
    # A critic that reads what confidence sampling ranks by: the generator's log-probability of each
    # token (0 for known ones) enters its input, and its negation is added to its score through a
    # learned gain that starts at 1 beside an output head that starts at 0. Untrained, it ranks as
    # confidence does; training learns what confidence misses.
    confidence_input: bool = False
    attn_scale: float = 8.0  # attention logits = attn_scale * cos-sim (query/key l2 normalised)

    def __post_init__(self) -> None:
        for name, lo, hi in (("num_tokens", 2, MAX_VOCAB), ("seq_len", 1, MAX_SEQ), ("dim", 1, MAX_WIDTH),
                             ("depth", 1, MAX_DEPTH), ("heads", 1, 1024), ("dim_head", 1, 4096),
                             ("ff_mult", 1, 64), ("text_dim", 1, MAX_WIDTH), ("cond_seq_len", 0, MAX_SEQ)):
            _check_int(self, name, lo, hi)
        _check_float(self, "attn_scale", 1e-3, 1e3)
        for name in ("self_cond", "self_critic", "cond_spatial", "text_pooled", "confidence_input"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"TransformerConfig.{name} must be true or false, got {getattr(self, name)!r}")
        if self.kind not in ("generator", "critic"):
            raise ConfigError(f"TransformerConfig.kind must be 'generator' or 'critic', got {self.kind!r}")
        if self.cond_spatial:
            if not self.cond_seq_len:
                raise ConfigError("cond_spatial needs conditioning ids (cond_seq_len > 0)")
            side, cond_side = self.grid, int(round(self.cond_seq_len ** 0.5))
            if cond_side * cond_side != self.cond_seq_len or side % cond_side:
                raise ConfigError(f"cond_spatial needs a square conditioning grid that divides the {side}x{side} "
                                  f"token grid, got {self.cond_seq_len} conditioning ids")
        if self.kind == "critic" and self.self_critic:
            raise ConfigError("a critic cannot also have a self-critic head")
        if self.confidence_input and self.kind != "critic":
            raise ConfigError("confidence_input is a critic's: a generator makes the log-probabilities it reads")
        if self.num_parameters() > MAX_PARAMETERS:
            raise ConfigError(f"config asks for ~{self.num_parameters():,} parameters (limit {MAX_PARAMETERS:,})")

    @property
    def mask_id(self) -> int:
        return self.num_tokens

    @property
    def grid(self) -> int:
        side = int(round(self.seq_len ** 0.5))
        if side * side != self.seq_len:
            raise ConfigError(f"seq_len {self.seq_len} is not a square grid")
        return side

    def num_parameters(self) -> int:
        inner = self.heads * self.dim_head
        attn = self.dim * inner * 2 + self.dim * inner * 2  # q, out, and k/v (self) of one attention
        cross = self.dim * inner * 2 + self.dim * inner * 2
        ff = self.dim * self.dim * self.ff_mult * 3
        emb = (self.num_tokens + 1 + self.seq_len + self.cond_seq_len) * self.dim + self.text_dim * self.dim
        if self.cond_spatial:
            emb += self.num_tokens * self.dim + 9 * self.dim * self.dim
        if self.text_pooled:
            emb += self.text_dim * self.dim
        return self.depth * (attn + cross + ff) + emb + self.dim * self.num_tokens


CONFIG_CLASSES = {"VQConfig": VQConfig, "TransformerConfig": TransformerConfig}


def config_to_dict(cfg: Any) -> dict:
    """A JSON-ready dict that names its class, so a folder describes itself."""
    return {"config_class": type(cfg).__name__, **dataclasses.asdict(cfg)}


def config_from_dict(data: dict, expected: type) -> Any:
    """Rebuild and validate a config; unknown or missing keys are errors, not silent defaults."""
    if not isinstance(data, dict):
        raise ConfigError("config.json must hold a JSON object")
    data = dict(data)
    name = data.pop("config_class", expected.__name__)
    if name != expected.__name__:
        raise ConfigError(f"config.json describes a {name}, expected a {expected.__name__}")
    known = {f.name for f in dataclasses.fields(expected)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"unknown keys in {expected.__name__} config: {unknown}")
    try:
        return expected(**data)
    except TypeError as err:
        raise ConfigError(f"invalid {expected.__name__} config: {err}") from None


def replace(cfg: Any, **changes: Any) -> Any:
    return dataclasses.replace(cfg, **changes)


__all__ = ["VQConfig", "TransformerConfig", "ConfigError", "config_to_dict", "config_from_dict"]
