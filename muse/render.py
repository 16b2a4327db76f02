"""Token grids to pictures: step previews with the still-masked tokens greyed, final images, and the
inpainting paste. The one place that turns ids into pixels for the pipeline."""

from __future__ import annotations

from typing import Optional

import torch
from PIL import Image

from .images import pil_to_tensor, tensor_to_pil
from .ops import token_cells
from .preview import PreviewDecoder
from .transformer import native_bf16
from .vq import VQModel

MASK_GRAY = 0.5  # overlay colour of still-masked tokens in previews
MASK_ALPHA = 0.75


class Renderer:
    """Decodes token grids with the tokenizer (final images) or the tiny preview decoder (steps)."""

    def __init__(self, vq: VQModel, preview_decoder: Optional[PreviewDecoder] = None):
        self.vq, self.preview_decoder = vq, preview_decoder
        # Intermediate previews through the tiny distilled decoder when there is one (`muse.preview`);
        # False decodes them with the full tokenizer decoder. Final images always use the full one.
        self.fast_previews = True

    @property
    def factor(self) -> int:
        """Pixels per token along each side."""
        return self.vq.config.downsample

    def decode(self, ids: torch.Tensor, preview: bool = False) -> torch.Tensor:
        """ids (B, h, w) -> images (B, 3, H, W) in [0, 1].

        Previews decode with the preview decoder when there is one (and fast_previews is on), else with
        the tokenizer's decoder in bfloat16 where the device computes it natively; the final image always
        decodes with the full decoder in float32."""
        if preview and self.fast_previews and self.preview_decoder is not None:
            return self.preview_decoder.decode(self.vq, ids)  # ~1/15 of the cost
        device = ids.device
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=preview and native_bf16(device)):
            return self.vq.decode(ids).float()

    def step_images(self, ids: torch.Tensor, pred_ids: torch.Tensor, masked: torch.Tensor,
                    preview: bool = False) -> tuple[list[Image.Image], list[Image.Image]]:
        """The canvas (still-masked tokens greyed) and the prediction (every still-masked token filled
        with the model's current guess), from one decode: they are the same token grid. Grids (B, h, w)."""
        prediction = self.decode(torch.where(masked, pred_ids, ids), preview)
        if not bool(masked.any()):
            images = tensor_to_pil(prediction)
            return images, images
        cover = token_cells(masked[:, None].float(), self.factor)  # (B, 1, H, W)
        canvas = prediction * (1 - MASK_ALPHA * cover) + MASK_GRAY * MASK_ALPHA * cover
        return tensor_to_pil(canvas), tensor_to_pil(prediction)

    def blank(self, images: torch.Tensor, region: torch.Tensor) -> torch.Tensor:
        """White out the token cells of `region` (h, w) in images (B, 3, H, W), so that nothing under an
        inpainting mask reaches the encoder."""
        return images.masked_fill(token_cells(region, self.factor), 1.0)

    def paste(self, images: list[Image.Image], original: torch.Tensor, region: torch.Tensor) -> list[Image.Image]:
        """Inpainting: the original pixels (1, 3, H, W) outside the token cells of `region` (h, w), the
        generated images inside. The tokens there are fixed anyway; their decode is only the tokenizer's
        approximation of the original, which the user should not be shown."""
        keep = ~token_cells(region, self.factor)
        return tensor_to_pil(torch.where(keep, original, pil_to_tensor(images).to(original.device)))
