"""A tiny preview decoder: token ids -> an approximate image at ~1/15 of the tokenizer decoder's cost.

Streaming a preview at every decoding step would otherwise decode the full VQ decoder once per step,
which on a CPU costs about as much as the transformer step itself. Like the tiny autoencoders
image UIs use for diffusion previews, this small convolutional net is distilled from the real
decoder (same codes in, its images as targets) and is used only for the intermediate previews; the
final image of every request is always decoded by the full tokenizer decoder.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .config import ConfigError, _check_int
from .hub import PretrainedMixin


@dataclass
class PreviewConfig:
    code_dim: int = 32  # the tokenizer's code width
    downsample: int = 4  # pixels per token side
    hidden: int = 64
    out_channels: int = 3

    def __post_init__(self) -> None:
        _check_int(self, "code_dim", 1, 4096)
        _check_int(self, "downsample", 1, 64)
        _check_int(self, "hidden", 1, 4096)
        _check_int(self, "out_channels", 1, 16)
        if self.downsample & (self.downsample - 1):
            raise ConfigError(f"PreviewConfig.downsample must be a power of two, got {self.downsample}")


class PreviewDecoder(nn.Module, PretrainedMixin):
    """codes (B, code_dim, h, w), as `VQModel.quantizer.lookup` gives them -> images (B, 3, h*f, w*f)."""

    config_class = PreviewConfig

    def __init__(self, config: PreviewConfig):
        super().__init__()
        self.config = config
        c, f = config.hidden, config.downsample
        self.net = nn.Sequential(nn.Conv2d(config.code_dim, c, 3, padding=1), nn.SiLU(),
                                 nn.Conv2d(c, c, 3, padding=1), nn.SiLU(),
                                 nn.Conv2d(c, config.out_channels * f * f, 1), nn.PixelShuffle(f))

    def forward(self, codes: torch.Tensor) -> torch.Tensor:
        """Unclamped output in about [0, 1] (the training target's range)."""
        return self.net(codes)

    @torch.inference_mode()
    def decode(self, vq: nn.Module, ids: torch.Tensor) -> torch.Tensor:
        """ids (B, h, w) -> images (B, 3, H, W) in [0, 1], through `vq`'s codebook."""
        codes = vq.quantizer.lookup(ids).to(self.net[0].weight.dtype)
        return self(codes).float().clamp(0, 1)


def distill_loss(preview: PreviewDecoder, codes: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, dict]:
    """MSE to the full decoder's images; also reports PSNR (dB) against them."""
    mse = F.mse_loss(preview(codes), target)
    value = float(mse.detach())
    return mse, {"mse": value, "psnr": 10 * math.log10(1 / max(value, 1e-10))}


__all__ = ["PreviewConfig", "PreviewDecoder", "distill_loss"]
