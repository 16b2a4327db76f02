"""Token grids to pictures: step previews with the still-masked tokens greyed, final images, and the
inpainting paste. The one place that turns ids into pixels for the pipeline."""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from PIL import Image

from .images import pil_to_tensor, tensor_to_pil
from .ops import token_cells
from .preview import PreviewDecoder
from .transformer import native_bf16
from .vq import VQModel

MASK_GRAY = 0.5  # overlay colour of still-masked tokens in previews
MASK_ALPHA = 0.75
# Back-projection passes for a super-res image (see `match_low_res`). On 48 images of the shipped model,
# 1 / 3 / 10 passes gave 29.3 / 30.3 / 30.5 dB PSNR against the originals; after 10, the result's box
# downsampling is within 67 dB PSNR of the low-res image.
LOW_RES_PASSES = 10


def match_low_res(images: torch.Tensor, low_res: torch.Tensor, passes: int = LOW_RES_PASSES) -> torch.Tensor:
    """Iterative back-projection (Irani & Peleg, 1991): images (B, 3, H, W) corrected until their box
    downsampling to low_res's size matches low_res (B, 3, h, w), both in [0, 1], H a multiple of h.

    Each pass adds the bicubic upsampling of what the box downsampling still misses. The low frequencies
    then come from the low-res image the super-res stage was given, and the detail its tokens drew stays:
    a wrong token can no longer change a region's colour, only its texture."""
    factor = images.shape[-1] // low_res.shape[-1]
    if factor < 2 or images.shape[-1] != factor * low_res.shape[-1]:
        raise ValueError(f"a {images.shape[-1]} px image cannot be matched to a {low_res.shape[-1]} px one")
    x = images
    for _ in range(passes):
        missing = low_res - F.avg_pool2d(x, factor)
        x = (x + F.interpolate(missing, scale_factor=factor, mode="bicubic", align_corners=False)).clamp(0, 1)
    return x


class Renderer:
    """Decodes token grids with the tokenizer (final images) or the tiny preview decoder (steps)."""

    def __init__(self, vq: VQModel, preview_decoder: Optional[PreviewDecoder] = None):
        self.vq, self.preview_decoder = vq, preview_decoder
        # Intermediate previews through the tiny distilled decoder when there is one (`muse.preview`);
        # False decodes them with the full tokenizer decoder. Final images always use the full one.
        self.fast_previews = True
        # A super-res stage's final image matched to its low-res input (`match_low_res`); False shows the
        # tokenizer's decode of its tokens alone.
        self.match_low_res = True

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
                    preview: bool = False, low_res: Optional[torch.Tensor] = None
                    ) -> tuple[list[Image.Image], list[Image.Image]]:
        """The canvas (still-masked tokens greyed) and the prediction (every still-masked token filled
        with the model's current guess), from one decode: they are the same token grid. Grids (B, h, w).
        `low_res` (B, 3, h', w'): the image a super-res stage enlarges; with match_low_res on, the decode
        is matched to it (`match_low_res`)."""
        prediction = self.decode(torch.where(masked, pred_ids, ids), preview)
        if low_res is not None and self.match_low_res:
            prediction = match_low_res(prediction, low_res.to(prediction))
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
