"""aMUSEd (diffusers' UVit2DModel, VQModel, CLIP-L with projection) behind muse's pipeline API.

`AmusedPipeline` is a `TokenPipeline` with one stage ("base"): `__call__` (also `output_type="ids"`),
`stream`, `inpaint`, `stream_inpaint` and the same `DecodeStep`s as MUSE's. Its token loop is muse's
sampler (`muse.runner.run_stage`) set to aMUSEd's rules (`muse.sampler_rules`, rules="amused"), so a fixed
generator gives exactly the ids and images of diffusers' AmusedPipeline; `sampler="muse"` runs our
MaskGIT rules on the same model instead. diffusers' deprecated pipelines are not used.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator, Optional, Union

import torch
from PIL import Image

from ..guidance import is_guided
from ..hub import PathLike, WeightsError
from ..images import ImageLike, pil_to_tensor, square
from ..loader import check_device
from ..request import GenerationRequest, Prompts, check_region, given_or_checked
from ..runner import Stage, StagePlan, run_stage
from ..sampling import DecodeState
from ..settings import GenerationSettings
from ..steps import DecodeStep
from ..token_pipeline import TokenPipeline
from .components import AmusedLogits, AmusedTokenizer, ClipText, PalettePreview, amused_mask_grid
from .load import AMUSED_DEFAULTS, LICENSE, check_layout, pipeline_config, require_diffusers, resolve_amused
from .options import EXTRA_OPTIONS, AmusedOptions
from .weights import load_parts, save_layout

INPAINT_SCHEDULE = "linear"  # aMUSEd's inpainting pipeline switches its scheduler to the linear schedule


class AmusedPipeline(TokenPipeline):
    """aMUSEd (amused/amused-256, amused/amused-512, or any folder in that layout) with muse's API.

    One stage, "base". Requests take muse's settings (aMUSEd's defaults: `AMUSED_DEFAULTS`) and the
    options of `AmusedOptions`, as keywords (sampler, aesthetic_score, crop_coord, micro_size) or as
    `options=`, one made by `options(...)`. Images of a request are ordered as aMUSEd orders them: all
    prompts, then all prompts again for each further image."""

    def __init__(self, vqvae: torch.nn.Module, transformer: torch.nn.Module, text_encoder: torch.nn.Module,
                 tokenizer: Any, scheduler_config: dict[str, Any], source: str = "amused"):
        vq = AmusedTokenizer(vqvae.eval())
        self.grid = int(transformer.config.sample_size)
        config = pipeline_config(source, self.grid * vq.config.downsample, scheduler_config,
                                 int(tokenizer.model_max_length))
        super().__init__(config, vq, PalettePreview())
        self.transformer = self.base_model = transformer.eval()
        self.tokenizer = tokenizer
        self.text_encoder = ClipText(text_encoder, tokenizer)  # not muse's TextEncoder: aMUSEd's own CLIP-L
        self.scheduler_config = dict(scheduler_config)
        self.mask_id = int(scheduler_config["mask_token_id"])

    # ----- construction and I/O -----------------------------------------------------------

    @classmethod
    def from_pretrained(cls, source: Optional[PathLike] = None, device: Union[str, torch.device, None] = None,
                        revision: Optional[str] = None, text_encoder: Any = None,
                        dtype: Union[str, torch.dtype, None] = "auto",
                        variant: Optional[str] = None) -> "AmusedPipeline":
        """A folder in diffusers layout or a Hub id (amused/amused-256, amused/amused-512).

        dtype "auto": float16 on CUDA (the published fp16 variant's precision), float32 elsewhere; the VQ
        decoder stays float32 (aMUSEd upcasts it too). variant "fp16" reads the *.fp16.safetensors files."""
        if source is None:
            raise WeightsError("name an aMUSEd folder or Hub id, e.g. amused/amused-256")
        require_diffusers()
        device = check_device(device)
        layout = check_layout(resolve_amused(source, revision=revision, variant=variant), variant)
        pipe = cls(**load_parts(layout), source=str(source))
        if dtype == "auto":
            dtype = torch.float16 if device.type == "cuda" else None
        return pipe.to(device, dtype)

    def to(self, device: Union[str, torch.device], dtype: Optional[torch.dtype] = None) -> "AmusedPipeline":
        """Move every component to `device`; `dtype` also casts the transformer and text encoder."""
        for model in (self.transformer, self.text_encoder.model):
            model.to(device, dtype) if dtype is not None else model.to(device)
        self.vq.vqvae.to(device)
        return self

    def save_pretrained(self, folder: PathLike) -> Path:
        """The diffusers layout (safetensors), loadable by `load_pipeline` and by diffusers."""
        return save_layout(folder, self.vq.vqvae, self.transformer, self.text_encoder.model, self.tokenizer,
                           self.scheduler_config)

    # ----- what a request will do -----------------------------------------------------------

    def uses_critic(self, use_critic: bool = True) -> bool:
        return False  # aMUSEd has no token critic: the keep choice is the model's confidence

    def options(self, **kwargs: Any) -> AmusedOptions:
        """Validated aMUSEd options (`AmusedOptions`), aMUSEd's defaults for the rest."""
        return AmusedOptions(**kwargs)

    def checked_options(self, options: Optional[AmusedOptions], values: dict[str, Any]) -> AmusedOptions:
        """A request's aMUSEd options: `options` as given (checked when made), else the keyword `values`
        checked now; both at once is an error."""
        return given_or_checked(options, values, "options", AmusedOptions, self.options)

    # ----- aMUSEd's stage ----------------------------------------------------------------------

    def _request(self, prompt: Prompts, negative_prompt: Optional[Prompts],
                 settings: Optional[GenerationSettings] = None, options: Optional[AmusedOptions] = None,
                 **kwargs: Any) -> GenerationRequest:
        options = self.checked_options(options, {k: kwargs.pop(k) for k in EXTRA_OPTIONS if k in kwargs})
        r = super()._request(prompt, negative_prompt, settings, **kwargs)
        if options.sampler == "amused" and r.settings.order != "confidence":
            raise ValueError(f"aMUSEd's own sampler rules rank tokens by confidence; order={r.settings.order!r} "
                             f"needs sampler='muse'")
        r.options = options
        return r

    def _plan(self, name: str, batch: int, known: Optional[torch.Tensor] = None,
              region: Optional[torch.Tensor] = None) -> StagePlan:
        if known is None:
            known = torch.full((batch, self.grid, self.grid), self.mask_id, dtype=torch.long, device=self.device)
            region = torch.ones(batch, self.grid, self.grid, dtype=torch.bool, device=self.device)
        return StagePlan(name, self.transformer, None, known, region)

    def encode_text(self, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """prompts (P) -> pooled (P, D), hidden states (P, L, H) (`ClipText.encode`)."""
        return self.text_encoder.encode(prompts, self.device)

    def bind(self, r: GenerationRequest) -> Stage:
        """The request's stage: text encoded once (prompts, then negatives or the empty prompt, as
        aMUSEd does), rows repeated per image, micro-conditions (width, height, crop top, crop left,
        aesthetic score)."""
        pooled, hidden = self.encode_text(r.prompts)
        n = r.settings.num_images
        pooled, hidden = pooled.repeat(n, 1), hidden.repeat(n, 1, 1)  # aMUSEd's row order
        scale = r.settings.cond_scale
        if is_guided(scale):  # aMUSEd's unconditional rows are the empty prompt's (or the negative prompt's)
            neg_pooled, neg_hidden = self.encode_text(r.negatives or [""] * len(r.prompts))
            pooled = torch.cat([neg_pooled.repeat(n, 1), pooled])
            hidden = torch.cat([neg_hidden.repeat(n, 1, 1), hidden])
        o = r.options
        width, height = o.micro_size or (self.output_size(),) * 2
        micro = torch.tensor([width, height, o.crop_coord[0], o.crop_coord[1], o.aesthetic_score],
                             device=self.device, dtype=hidden.dtype)
        micro = micro.unsqueeze(0).expand(hidden.shape[0], -1)
        logits = AmusedLogits(self.transformer, hidden, pooled, micro, scale, (self.grid, self.grid), self.mask_id,
                              r.settings.guidance_schedule)
        return Stage("base", logits, self.mask_id, None, rules=o.sampler)

    def _token_states(self, r: GenerationRequest, plans: list[StagePlan],
                      cond_ids: Optional[torch.Tensor] = None) -> Iterator[tuple[int, DecodeState]]:
        """(0, state) for every step of the one stage: muse's stage runner under the request's rules."""
        (plan,) = plans
        for state in run_stage(self.bind(r), plan.known, plan.region, r.settings, r.generator):
            yield 0, state

    def _inpaint_plans(self, r: GenerationRequest, rgb: Image.Image, mask: Image.Image
                       ) -> tuple[list[StagePlan], dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """aMUSEd's way: the whole image is encoded and the tokens whose (Lanczos-resized) mask is at least
        half white are masked. An image of another size is centre-cropped and resized to the model's
        (aMUSEd would run at the image's own size), so diffusers' ids are reproduced for images of the
        model's size."""
        size = self.output_size()
        original = pil_to_tensor([square(rgb, size)]).to(self.device)
        region = amused_mask_grid(square(mask.convert("L"), size), self.grid).to(self.device)
        check_region(region)
        known = self.vq.encode(original).expand(r.batch, -1, -1)
        plan = self._plan("base", r.batch, known, region.expand(r.batch, -1, -1))
        return [plan], {"base": original}, {"base": region}

    def stream_inpaint(self, image: ImageLike, mask: ImageLike, prompt: Prompts, *,
                       settings: Optional[GenerationSettings] = None, options: Optional[AmusedOptions] = None,
                       **kwargs: Any) -> Iterator[DecodeStep]:
        """`TokenPipeline.stream_inpaint` the aMUSEd way (`_inpaint_plans`); the counts start from the
        region's fraction of the image, on the linear schedule unless one is given (`settings` are used
        as they are, schedule included)."""
        if settings is None:
            kwargs.setdefault("schedule", INPAINT_SCHEDULE)
        return super().stream_inpaint(image, mask, prompt, settings=settings, options=options, **kwargs)


def load_amused(source: PathLike, device: Union[str, torch.device, None] = None, revision: Optional[str] = None,
                dtype: Union[str, torch.dtype, None] = "auto", variant: Optional[str] = None) -> AmusedPipeline:
    """`muse.load_pipeline` for aMUSEd weights (licence: OpenRAIL++-M, not muse's)."""
    return AmusedPipeline.from_pretrained(source, device=device, revision=revision, dtype=dtype, variant=variant)


__all__ = ["AmusedPipeline", "AmusedOptions", "AmusedTokenizer", "PalettePreview", "AmusedLogits", "load_amused",
           "AMUSED_DEFAULTS", "LICENSE"]
