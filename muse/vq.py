"""The VQ image tokenizer: a convolutional autoencoder with a learned codebook.

Images are (B, 3, H, W) floats in [0, 1]; ids are (B, H/4, W/4) longs. Training losses live in
`muse.train.losses`; this module is inference plus the codebook's own bookkeeping.

Codebook technique: factorised, l2-normalised codes (ViT-VQGAN). Looking codes up by cosine
similarity in a small space (code_dim 32) keeps every code in play from the start, and codes
that still fall out of use are restarted on live encoder outputs (`restart_dead_codes`), so
the codebook stays fully used without the tuning EMA updates need.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .config import VQConfig
from .hub import PretrainedMixin


def _groups(channels: int) -> int:
    for g in (32, 16, 8, 4, 2):
        if channels % g == 0:
            return g
    return 1


class ResBlock(nn.Module):
    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.body = nn.Sequential(nn.GroupNorm(_groups(cin), cin), nn.SiLU(), nn.Conv2d(cin, cout, 3, padding=1),
                                  nn.GroupNorm(_groups(cout), cout), nn.SiLU(), nn.Conv2d(cout, cout, 3, padding=1))
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.skip(x) + self.body(x)


class Upsample(nn.Module):
    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


def _encoder(cfg: VQConfig) -> nn.Sequential:
    widths = [cfg.base_channels * m for m in cfg.channel_mult]
    s = cfg.space_to_depth
    stem: list[nn.Module] = [nn.PixelUnshuffle(s)] if s > 1 else []
    layers: list[nn.Module] = stem + [nn.Conv2d(cfg.in_channels * s * s, widths[0], 3, padding=1)]
    for i, width in enumerate(widths):
        layers += [ResBlock(width, width) for _ in range(cfg.res_blocks)]
        if i + 1 < len(widths):
            layers.append(nn.Conv2d(width, widths[i + 1], 3, stride=2, padding=1))
    layers += [ResBlock(widths[-1], widths[-1]) for _ in range(cfg.mid_blocks)]
    layers += [nn.GroupNorm(_groups(widths[-1]), widths[-1]), nn.SiLU(), nn.Conv2d(widths[-1], cfg.code_dim, 1)]
    return nn.Sequential(*layers)


def _decoder(cfg: VQConfig) -> nn.Sequential:
    widths = [cfg.base_channels * m for m in cfg.channel_mult][::-1]
    layers: list[nn.Module] = [nn.Conv2d(cfg.code_dim, widths[0], 3, padding=1)]
    layers += [ResBlock(widths[0], widths[0]) for _ in range(cfg.mid_blocks)]
    for i, width in enumerate(widths):
        layers += [ResBlock(width, width) for _ in range(cfg.res_blocks)]
        if i + 1 < len(widths):
            layers.append(Upsample(width, widths[i + 1]))
    s = cfg.space_to_depth
    layers += [nn.GroupNorm(_groups(widths[-1]), widths[-1]), nn.SiLU(),
               nn.Conv2d(widths[-1], cfg.in_channels * s * s, 3, padding=1)]
    if s > 1:
        layers.append(nn.PixelShuffle(s))
    return nn.Sequential(*layers)


class Quantizer(nn.Module):
    """Nearest code by cosine similarity, straight-through gradients, usage tracking."""

    def __init__(self, codebook_size: int, code_dim: int, commitment: float):
        super().__init__()
        self.commitment = commitment
        self.codebook = nn.Parameter(torch.randn(codebook_size, code_dim))
        # Exponential moving average of how often each code is picked (training bookkeeping).
        self.register_buffer("usage", torch.ones(codebook_size))

    def codes(self) -> torch.Tensor:
        return F.normalize(self.codebook, dim=-1)  # (K, C)

    def lookup(self, ids: torch.Tensor) -> torch.Tensor:
        """ids (B, h, w) -> codes (B, C, h, w)."""
        return self.codes()[ids].permute(0, 3, 1, 2)

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """z (B, C, h, w) -> (quantised (B, C, h, w), ids (B, h, w), codebook + commitment loss)."""
        b, c, h, w = z.shape
        flat = F.normalize(z.permute(0, 2, 3, 1).reshape(-1, c), dim=-1)  # (B*h*w, C)
        codes = self.codes()
        ids = (flat @ codes.t()).argmax(dim=-1)
        quant = codes[ids]
        loss = F.mse_loss(quant, flat.detach()) + self.commitment * F.mse_loss(flat, quant.detach())
        if self.training:
            with torch.no_grad():
                counts = torch.bincount(ids, minlength=codes.shape[0]).float()
                self.usage.mul_(0.99).add_(counts / max(1, ids.numel()) * codes.shape[0], alpha=0.01)
        quant = flat + (quant - flat).detach()  # straight-through estimator
        return quant.view(b, h, w, c).permute(0, 3, 1, 2), ids.view(b, h, w), loss

    @torch.no_grad()
    def restart_dead_codes(self, z: torch.Tensor, threshold: float, generator: torch.Generator | None = None) -> int:
        """Move codes whose usage fell below `threshold` onto random encoder outputs z (B, C, h, w)."""
        dead = (self.usage < threshold).nonzero().flatten()
        if dead.numel() == 0:
            return 0
        flat = z.permute(0, 2, 3, 1).reshape(-1, z.shape[1])
        pick = torch.randint(0, flat.shape[0], (dead.numel(),), generator=generator).to(flat.device)
        self.codebook.data[dead] = F.normalize(flat[pick], dim=-1)
        self.usage[dead] = 1.0
        return int(dead.numel())


class VQModel(nn.Module, PretrainedMixin):
    """The tokenizer shared by both stages (32 px -> 8x8 ids, 64 px -> 16x16 ids)."""

    config_class = VQConfig

    def __init__(self, config: VQConfig):
        super().__init__()
        self.config = config
        self.encoder = _encoder(config)
        self.decoder = _decoder(config)
        self.quantizer = Quantizer(config.codebook_size, config.code_dim, config.commitment)

    @property
    def codebook_size(self) -> int:
        return self.config.codebook_size

    def _check_images(self, images: torch.Tensor) -> None:
        f = self.config.downsample
        if images.dim() != 4 or images.shape[1] != self.config.in_channels or images.shape[-1] % f or images.shape[-2] % f:
            raise ValueError(f"expected images (B, {self.config.in_channels}, H, W) with H, W multiples of {f}, "
                             f"got {tuple(images.shape)}")

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(B, 3, H, W) in [0, 1] -> (reconstruction, ids, quantiser loss, pre-quantisation z)."""
        self._check_images(images)
        z = self.encoder(images * 2 - 1)
        quant, ids, qloss = self.quantizer(z)
        recon = (self.decoder(quant) + 1) / 2
        return recon, ids, qloss, z

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) in [0, 1] -> ids (B, H/f, W/f), f = config.downsample."""
        self._check_images(images)
        z = self.encoder(images.to(self.quantizer.codebook.dtype) * 2 - 1)
        flat = F.normalize(z.permute(0, 2, 3, 1), dim=-1)  # (B, h, w, C)
        return (flat @ self.quantizer.codes().t()).argmax(dim=-1)

    def decode(self, ids: torch.Tensor) -> torch.Tensor:
        """ids (B, h, w) -> images (B, 3, f*h, f*w) in [0, 1], f = config.downsample."""
        if ids.dim() != 3:
            raise ValueError(f"expected ids (B, h, w), got {tuple(ids.shape)}")
        if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= self.codebook_size):
            raise ValueError(f"ids must be in [0, {self.codebook_size}); mask tokens cannot be decoded")
        return ((self.decoder(self.quantizer.lookup(ids)) + 1) / 2).clamp(0, 1)
