"""aMUSEd's parts as muse's pipeline sees them: its VQ as a tokenizer, a palette for step previews, its
CLIP text encoder, and its transformer as a guided logits function. diffusers is not imported here:
the parts wrap the modules `muse.amused.weights` builds.

Step previews are a per-code colour palette (`PalettePreview`), a lookup that costs nothing at 256 or
512 px; the final image always goes through the real VQ decoder.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ..batching import run_forward
from ..guidance import GuidanceScale, combine, is_guided

class AmusedTokenizer:
    """diffusers' VQModel as muse's renderer sees a tokenizer: ids (B, h, w) <-> images (B, 3, H, W) in [0, 1]."""

    def __init__(self, vqvae: torch.nn.Module):
        self.vqvae = vqvae
        self.config = SimpleNamespace(downsample=2 ** (len(vqvae.config.block_out_channels) - 1))
        self.codebook_size = vqvae.config.num_vq_embeddings

    def decode(self, ids: torch.Tensor) -> torch.Tensor:
        """ids (B, h, w) -> (B, 3, H, W), clipped to [0, 1] as aMUSEd does."""
        b, h, w = ids.shape
        shape = (b, h, w, self.vqvae.config.latent_channels)
        return self.vqvae.decode(ids, force_not_quantize=True, shape=shape).sample.clip(0, 1)

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """images (B, 3, H, W) in [0, 1] (aMUSEd does not normalise) -> ids (B, H/f, W/f)."""
        latents = self.vqvae.encode(images.to(self.vqvae.dtype)).latents
        b, _, h, w = latents.shape
        return self.vqvae.quantize(latents)[2][2].reshape(b, h, w)


class PalettePreview:
    """Step previews as one colour per code: ids (B, h, w) -> (B, 3, H, W) by table lookup.

    The palette is fitted once, lazily: a grid of random codes goes through the real decoder, and a
    least-squares map from each code's embedding (plus a constant) to the mean colour of its cell gives
    every code a colour: 8,192 codes from one 16 x 16 decode (256 cells for aMUSEd's 65 unknowns per
    colour), about one transformer step's time once per model. A preview then costs a gather, however
    large the image (benchmarks/amused.py)."""

    def __init__(self, samples: int = 1, seed: int = 0, max_grid: int = 16):
        self.samples, self.seed, self.max_grid = samples, seed, max_grid
        self.palette: Optional[torch.Tensor] = None  # (K, 3) in [0, 1]

    def eval(self) -> "PalettePreview":
        return self

    @torch.inference_mode()
    def fit(self, vq: AmusedTokenizer, grid: int) -> torch.Tensor:
        """The (K, 3) palette, from `samples` decodes of random (grid, grid) code maps."""
        generator = torch.Generator().manual_seed(self.seed)
        embedding = vq.vqvae.quantize.embedding.weight.detach().float().cpu()  # (K, C)
        ids = torch.randint(0, vq.codebook_size, (self.samples, grid, grid), generator=generator)
        device = vq.vqvae.quantize.embedding.weight.device
        images = vq.decode(ids.to(device)).float().cpu()  # (S, 3, H, W)
        cells = F.avg_pool2d(images, vq.config.downsample)  # (S, 3, grid, grid): each token's mean colour
        features = torch.cat([embedding, torch.ones(len(embedding), 1)], dim=1)  # (K, C + 1)
        rows = features[ids.flatten()]  # (S * grid * grid, C + 1)
        targets = cells.permute(0, 2, 3, 1).reshape(-1, 3)
        solution = torch.linalg.lstsq(rows.double(), targets.double()).solution.float()  # (C + 1, 3)
        self.palette = (features @ solution).clamp(0, 1)
        return self.palette

    def decode(self, vq: AmusedTokenizer, ids: torch.Tensor) -> torch.Tensor:
        """ids (B, h, w) -> (B, 3, h * f, w * f): each token a flat cell of its code's colour."""
        if self.palette is None:
            self.fit(vq, min(ids.shape[-1], self.max_grid))
        colours = self.palette.to(ids.device)[ids].permute(0, 3, 1, 2)  # (B, 3, h, w)
        f = vq.config.downsample
        return colours.repeat_interleave(f, -2).repeat_interleave(f, -1)


class ClipText:
    """aMUSEd's CLIP-L text encoder with projection and its tokenizer, read as aMUSEd reads them."""

    def __init__(self, model: torch.nn.Module, tokenizer: Any):
        self.model, self.tokenizer = model.eval(), tokenizer
        self.max_length = int(tokenizer.model_max_length)  # 77: CLIP's context, padded to it
        self.dim = int(model.config.hidden_size)

    def truncates(self, text: str) -> bool:
        """Whether `text` is longer than the encoder reads (it is then cut to `max_length` tokens)."""
        return len(self.tokenizer(text, truncation=True, max_length=self.max_length + 1).input_ids) > self.max_length

    def to(self, *args: Any) -> "ClipText":
        self.model.to(*args)
        return self

    def encode(self, prompts: list[str], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """prompts (P) -> pooled projection (P, D) and the penultimate layer's hidden states (P, L, H),
        padded to the tokenizer's maximum length."""
        ids = self.tokenizer(prompts, return_tensors="pt", padding="max_length", truncation=True,
                             max_length=self.max_length).input_ids.to(device)
        out = self.model(ids, return_dict=True, output_hidden_states=True)
        return out.text_embeds, out.hidden_states[-2]


class AmusedLogits:
    """The UVit2D transformer bound to a request's text and micro-conditions, guidance folded in as
    aMUSEd does it (unconditional rows first, one batch): ids (B, N) -> logits (B, N, K)."""

    def __init__(self, transformer: torch.nn.Module, hidden: torch.Tensor, pooled: torch.Tensor,
                 micro_conds: torch.Tensor, cond_scale: float, grid: tuple[int, int], mask_id: int,
                 schedule: str = "constant"):
        self.transformer, self.hidden, self.pooled, self.micro = transformer, hidden, pooled, micro_conds
        self.cond_scale, self.grid = float(cond_scale), grid
        self.scale = GuidanceScale(self.cond_scale, schedule, mask_id)
        self.guided = is_guided(self.cond_scale)  # then hidden, pooled and micro hold (2B) rows: [uncond; cond]

    def __call__(self, ids: torch.Tensor) -> torch.Tensor:
        b = ids.shape[0]
        x = ids.view(b, *self.grid)
        if self.guided:
            x = torch.cat([x] * 2)
        # Through the batcher when a `muse.batching.Batcher` runs this request, else at once.
        out = run_forward(AmusedCall(self.transformer, x, self.micro, self.pooled, self.hidden, b))  # (B', K, h, w)
        out = combine(out, self.scale(ids), uncond_first=True, upcast=False)  # in the model's dtype, as aMUSEd
        # The same (B, N, K) view as AmusedScheduler.step makes: its softmax then sees the same layout.
        return out.reshape(b, out.shape[1], -1).permute(0, 2, 1)


@dataclass(frozen=True)
class AmusedCall:
    """The UVit2D transformer's forward for one request (`muse.batching.Batchable`): rows (B', ...) of token
    grids, micro-conditions, pooled text and hidden states (padded to CLIP's 77 tokens, so requests stack
    without padding) -> logits (B', K, h, w)."""

    transformer: torch.nn.Module
    ids: torch.Tensor  # long (B', h, w); B' = 2B under guidance
    micro: torch.Tensor  # (B', 5)
    pooled: torch.Tensor  # (B', D)
    hidden: torch.Tensor  # (B', L, H)
    images: int  # B

    @property
    def key(self) -> Optional[torch.nn.Module]:
        # A single row (one image, unguided) runs alone: UVit2D projects each row's pooled text and
        # micro-conditions as a product of that many rows, and MKL computes a one-row product another way
        # (measured on a random UVit2D of hidden size 256: one row differs in its last bits, 2 and more match).
        return self.transformer if self.ids.shape[0] > 1 else None

    def alone(self) -> torch.Tensor:
        return self.transformer(self.ids, micro_conds=self.micro, pooled_text_emb=self.pooled,
                                encoder_hidden_states=self.hidden)

    @staticmethod
    def together(calls: Sequence["AmusedCall"]) -> list[torch.Tensor]:
        out = calls[0].transformer(torch.cat([c.ids for c in calls]), micro_conds=torch.cat([c.micro for c in calls]),
                                   pooled_text_emb=torch.cat([c.pooled for c in calls]),
                                   encoder_hidden_states=torch.cat([c.hidden for c in calls]))
        return list(out.split([c.ids.shape[0] for c in calls]))


def amused_mask_grid(mask: Image.Image, grid: int) -> torch.Tensor:
    """aMUSEd's mask preprocessing (diffusers' VaeImageProcessor with binarize and grayscale): a
    grayscale Lanczos resize to the token grid, then >= 0.5 of white: bool (grid, grid)."""
    small = mask.convert("L").resize((grid, grid), Image.Resampling.LANCZOS)
    return torch.from_numpy(np.asarray(small, dtype=np.float32) / 255.0 >= 0.5)
