"""MUSE's pipeline: text -> token ids -> image, in two stages (base 32 px, super-res 64 px), plus
inpainting and super-res of a given image.

`MusePipeline` owns the components and turns a request into stage plans; the request, the streaming and
the public API are every family's (`muse.token_pipeline.TokenPipeline`). The token-level work goes through
the stage runner (`muse.runner`), the pixels through the renderer (`muse.render`), loading and its checks
through `muse.loader`, and the settings through the one schema (`muse.settings`). `muse.load_pipeline`
picks this class or aMUSEd's for a folder.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator, Optional, Union

import torch
from PIL import Image

from .guidance import is_guided
from .hub import PathLike
from .images import mask_to_grid, pil_to_tensor, square
from .loader import (DEFAULT_WEIGHTS, PIPELINE_NAME, PipelineConfig, check_compatible, check_device, load_components,
                     save_pipeline_config)
from .preview import PreviewDecoder
from .request import GenerationRequest, check_region
from .runner import StagePlan, TextContext, has_critic, run_stages
from .sampling import DecodeState
from .settings import GenerationSettings
from .steps import DecodeStep
from .text import TextEncoder
from .token_pipeline import TokenPipeline
from .transformer import MaskedTransformer, inference_dtype
from .vq import VQModel

__all__ = ["MusePipeline", "DecodeStep", "PipelineConfig", "GenerationSettings", "DEFAULT_WEIGHTS", "PIPELINE_NAME"]

# folder name -> attribute
ATTRIBUTES = {"vq": "vq", "base": "base_model", "base_critic": "base_critic", "superres": "superres_model",
              "superres_critic": "superres_critic", "preview": "preview_decoder"}


class MusePipeline(TokenPipeline):
    """The two-stage MUSE model: tokenizer, text encoder, base and super-res transformers, critics."""

    def __init__(self, vq: VQModel, base: MaskedTransformer, text_encoder: Optional[TextEncoder] = None,
                 superres: Optional[MaskedTransformer] = None, base_critic: Optional[MaskedTransformer] = None,
                 superres_critic: Optional[MaskedTransformer] = None, config: Optional[PipelineConfig] = None,
                 preview: Optional[PreviewDecoder] = None):
        super().__init__(config or PipelineConfig(), vq.eval(), preview)
        self.base_model = base.eval()
        self.superres_model = superres.eval() if superres else None
        self.base_critic = base_critic.eval() if base_critic else None
        self.superres_critic = superres_critic.eval() if superres_critic else None
        self.text_encoder = text_encoder or TextEncoder(self.config.text_encoder, self.config.text_max_length)
        check_compatible(self.config, self.text_encoder.dim, self.vq, self.base_model, self.superres_model,
                         self.base_critic, self.superres_critic, self.renderer.preview_decoder)

    # ----- construction and I/O -----------------------------------------------------------

    def to(self, device: Union[str, torch.device], dtype: Optional[torch.dtype] = None) -> "MusePipeline":
        """Move every component to `device`; `dtype` also casts the transformers (the decoders stay float32)."""
        for attr in ATTRIBUTES.values():
            model = getattr(self, attr)
            if model is not None:
                model.to(device)
                if dtype is not None and attr not in ("vq", "preview_decoder"):  # both tiny, kept float32
                    model.to(dtype)
        self.text_encoder.to(device)
        return self

    def save_pretrained(self, folder: PathLike) -> Path:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        for name, attr in ATTRIBUTES.items():
            model = getattr(self, attr)
            if model is not None:
                model.save_pretrained(folder / name)
        save_pipeline_config(self.config, folder)
        return folder

    @classmethod
    def from_pretrained(cls, source: Optional[PathLike] = None, device: Union[str, torch.device, None] = None,
                        revision: Optional[str] = None, text_encoder: Optional[TextEncoder] = None,
                        dtype: Union[str, torch.dtype, None] = "auto") -> "MusePipeline":
        """Load from a folder or a Hub repo id; None means the shipped `weights/`.

        dtype "auto" runs the transformers in bfloat16 where the device computes it natively, else float32
        (see `muse.transformer.inference_dtype`); None keeps the stored float32."""
        device = check_device(device)
        config, parts = load_components(source, revision=revision)
        pipe = cls(text_encoder=text_encoder, config=config, **parts)
        if dtype == "auto":
            dtype = inference_dtype(device)
        return pipe.to(device, dtype)

    # ----- MUSE's stages ---------------------------------------------------------------------

    def uses_critic(self, use_critic: bool = True) -> bool:
        """Whether `use_critic` puts a critic in charge of the keep choice (else the model's confidence)."""
        return bool(use_critic) and has_critic(self.base_model, self.base_critic)

    def _plan(self, name: str, batch: int, known: Optional[torch.Tensor] = None,
              region: Optional[torch.Tensor] = None) -> StagePlan:
        model, critic = (self.base_model, self.base_critic) if name == "base" else \
            (self.superres_model, self.superres_critic)
        side = model.config.grid
        if known is None:
            known = torch.zeros(batch, side, side, dtype=torch.long, device=self.device)
            region = torch.ones(batch, side, side, dtype=torch.bool, device=self.device)
        return StagePlan(name, model, critic, known, region)

    def _token_states(self, r: GenerationRequest, plans: list[StagePlan],
                      cond_ids: Optional[torch.Tensor] = None) -> Iterator[tuple[int, DecodeState]]:
        """The stage runner over the plans, the request's text encoded once."""
        negatives = r.negatives if is_guided(r.settings.cond_scale) else None
        text = TextContext.encode(self.text_encoder, r.prompts, negatives, r.settings.num_images, self.device)
        return run_stages(plans, text, r.settings, r.generator, cond_ids)

    def _inpaint_plans(self, r: GenerationRequest, rgb: Image.Image, mask: Image.Image
                       ) -> tuple[list[StagePlan], dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """Base stage then super-res, each over the mask's tokens at its own size."""
        names, summary = self.stage_names(r.settings.superres), self.summary
        originals = {n: pil_to_tensor([square(rgb, summary.image_size(n))]).to(self.device) for n in names}
        regions = {n: mask_to_grid(mask, summary.image_size(n) // self.renderer.factor).to(self.device) for n in names}
        check_region(regions["base"])
        # Nothing under the mask may reach the fill: the region's pixels are blanked before encoding
        # (the encoder's receptive field would otherwise carry them into neighbouring known tokens),
        # masked positions enter the network as mask tokens, and super-res is conditioned on the
        # base stage's new low-res tokens.
        known = {n: self.vq.encode(self.renderer.blank(originals[n], regions[n])) for n in names}
        plans = [self._plan(n, r.batch, known[n].expand(r.batch, -1, -1), regions[n].expand(r.batch, -1, -1))
                 for n in names]
        return plans, originals, regions
