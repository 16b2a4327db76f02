"""aMUSEd (diffusers' UVit2DModel, VQModel, CLIP-L with projection) behind muse's pipeline API.

`AmusedPipeline` is a `MusePipeline` with one stage ("base"): `__call__` (also `output_type="ids"`),
`stream`, `inpaint`, `stream_inpaint` and the same `DecodeStep`s. Its token loop is muse's sampler
(`muse.runner.run_stage`) set to aMUSEd's rules (`muse.sampler_rules`, rules="amused"), so a fixed
generator gives exactly the ids and images of diffusers' AmusedPipeline; `sampler="muse"` runs our
MaskGIT rules on the same model instead. diffusers' deprecated pipelines are not used.

Step previews are a per-code colour palette (`PalettePreview`), a lookup that costs nothing at 256 or
512 px; the final image always goes through the real VQ decoder.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Iterator, Optional, Sequence, Union

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ..guidance import combine, is_guided
from ..hub import (SAFETENSORS_FLOAT, PathLike, WeightsError, load_safetensors, read_safetensors_header,
                   strict_load)
from ..hub import _raise_mismatch as raise_mismatch
from ..images import ImageError, ImageLike, as_mask, as_pil, pil_to_tensor, square, to_rgb
from ..loader import PipelineSummary, check_device
from ..pipeline import DecodeStep, MusePipeline, _Request
from ..render import Renderer
from ..runner import Stage, StagePlan, run_stage
from ..sampling import DecodeState
from ..settings import AMUSED_SCHEMA, MAX_MICRO, GenerationSettings, SettingError, shown
from .load import (AMUSED_DEFAULTS, LICENSE, MODEL_INDEX, AmusedLayout, check_layout, pipeline_config,
                   require_diffusers, resolve_amused)

INPAINT_SCHEDULE = "linear"  # aMUSEd's inpainting pipeline switches its scheduler to the linear schedule
DEFAULT_AESTHETIC_SCORE = 6.0
DEFAULT_CROP_COORD = (0, 0)
EXTRA_OPTIONS = ("sampler", "aesthetic_score", "crop_coord", "micro_size")


@dataclass(frozen=True)
class AmusedOptions:
    """The request options aMUSEd has beyond muse's settings schema, checked by their own schema
    (`muse.settings.AMUSED_SCHEMA`: the same limits and messages as the playground's controls)."""

    sampler: str = "amused"  # sampler rules: "amused" (aMUSEd's, exact) or "muse" (our MaskGIT rules)
    aesthetic_score: float = DEFAULT_AESTHETIC_SCORE  # LAION aesthetic score the model is asked for
    crop_coord: tuple[int, int] = DEFAULT_CROP_COORD  # (top, left) crop the model is told the image had
    micro_size: Optional[tuple[int, int]] = None  # (width, height) it is told; None: the output size

    def __post_init__(self) -> None:
        for name in ("sampler", "aesthetic_score"):
            object.__setattr__(self, name, AMUSED_SCHEMA[name].check(getattr(self, name)))
        pairs = {"crop_coord": ("crop_top", "crop_left"), "micro_size": ("micro_width", "micro_height")}
        for name, (first, second) in pairs.items():
            value = getattr(self, name)
            if value is None and name == "micro_size":
                continue
            if not isinstance(value, (tuple, list)) or len(value) != 2:
                raise SettingError(f"{name} must be two whole numbers ({first}, {second}) from 0 to {MAX_MICRO}, "
                                   f"got {shown(value)}.")
            try:
                value = (AMUSED_SCHEMA[first].check(value[0]), AMUSED_SCHEMA[second].check(value[1]))
            except SettingError as err:
                raise SettingError(f"{name}: {err}") from None
            if None in value:
                raise SettingError(f"{name} must be two whole numbers, got {shown(value)}.")
            object.__setattr__(self, name, value)


@dataclass
class _AmusedRequest(_Request):
    options: AmusedOptions = dataclasses.field(default_factory=AmusedOptions)


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
                 micro_conds: torch.Tensor, cond_scale: float, grid: tuple[int, int]):
        self.transformer, self.hidden, self.pooled, self.micro = transformer, hidden, pooled, micro_conds
        self.cond_scale, self.grid = float(cond_scale), grid
        self.guided = is_guided(self.cond_scale)  # then hidden, pooled and micro hold (2B) rows: [uncond; cond]

    def __call__(self, ids: torch.Tensor) -> torch.Tensor:
        b = ids.shape[0]
        x = ids.view(b, *self.grid)
        if self.guided:
            x = torch.cat([x] * 2)
        out = self.transformer(x, micro_conds=self.micro, pooled_text_emb=self.pooled,
                               encoder_hidden_states=self.hidden)  # (B', K, h, w)
        out = combine(out, self.cond_scale, uncond_first=True, upcast=False)  # in the model's dtype, as aMUSEd
        # The same (B, N, K) view as AmusedScheduler.step makes: its softmax then sees the same layout.
        return out.reshape(b, out.shape[1], -1).permute(0, 2, 1)


def amused_mask_grid(mask: Image.Image, grid: int) -> torch.Tensor:
    """aMUSEd's mask preprocessing (diffusers' VaeImageProcessor with binarize and grayscale): a
    grayscale Lanczos resize to the token grid, then >= 0.5 of white: bool (grid, grid)."""
    small = mask.convert("L").resize((grid, grid), Image.Resampling.LANCZOS)
    return torch.from_numpy(np.asarray(small, dtype=np.float32) / 255.0 >= 0.5)


class AmusedPipeline(MusePipeline):
    """aMUSEd (amused/amused-256, amused/amused-512, or any folder in that layout) with muse's API.

    One stage, "base". Requests take muse's settings (aMUSEd's defaults: `AMUSED_DEFAULTS`) and the
    options of `AmusedOptions`: sampler, aesthetic_score, crop_coord, micro_size. Images of a request
    are ordered as aMUSEd orders them: all prompts, then all prompts again for each further image."""

    def __init__(self, vqvae: torch.nn.Module, transformer: torch.nn.Module, text_encoder: torch.nn.Module,
                 tokenizer: Any, scheduler_config: dict[str, Any], source: str = "amused"):
        # MusePipeline.__init__ is not run: its components and checks are muse's own networks'.
        self.vq = AmusedTokenizer(vqvae.eval())
        self.transformer, self.tokenizer = transformer.eval(), tokenizer
        self.text_encoder = ClipText(text_encoder, tokenizer)  # not muse's TextEncoder: aMUSEd's own CLIP-L
        self.scheduler_config = dict(scheduler_config)
        self.mask_id = int(scheduler_config["mask_token_id"])
        self.grid = int(transformer.config.sample_size)
        self.config = pipeline_config(source, self.grid * self.vq.config.downsample, scheduler_config,
                                      int(tokenizer.model_max_length))
        self.base_model, self.superres_model, self.base_critic, self.superres_critic = transformer, None, None, None
        self.renderer = Renderer(self.vq, PalettePreview())

    # ----- construction and I/O -----------------------------------------------------------

    @classmethod
    def from_pretrained(cls, source: Optional[PathLike] = None, device: Union[str, torch.device, None] = None,
                        revision: Optional[str] = None, text_encoder: Any = None,
                        dtype: Union[str, torch.dtype, None] = "auto", variant: Optional[str] = None) -> "AmusedPipeline":
        """A folder in diffusers layout or a Hub id (amused/amused-256, amused/amused-512).

        dtype "auto": float16 on CUDA (the published fp16 variant's precision), float32 elsewhere; the VQ
        decoder stays float32 (aMUSEd upcasts it too). variant "fp16" reads the *.fp16.safetensors files."""
        if source is None:
            raise WeightsError("name an aMUSEd folder or Hub id, e.g. amused/amused-256")
        require_diffusers()
        device = check_device(device)
        layout = check_layout(resolve_amused(source, revision=revision, variant=variant), variant)
        pipe = load_components(layout, str(source))
        if dtype == "auto":
            dtype = torch.float16 if device.type == "cuda" else None
        return pipe.to(device, dtype)

    def to(self, device: Union[str, torch.device], dtype: Optional[torch.dtype] = None) -> "AmusedPipeline":
        """Move every component to `device`; `dtype` also casts the transformer and text encoder."""
        for model in (self.transformer, self.text_encoder.model):
            model.to(device, dtype) if dtype is not None else model.to(device)
        self.vq.vqvae.to(device)
        return self

    @property
    def device(self) -> torch.device:
        return next(self.transformer.parameters()).device

    def save_pretrained(self, folder: PathLike) -> Path:
        """The diffusers layout (safetensors), loadable by `load_pipeline` and by diffusers."""
        return save_layout(folder, self.vq.vqvae, self.transformer, self.text_encoder.model, self.tokenizer,
                           self.scheduler_config)

    def compile(self, backend: Any = "inductor", mode: Optional[str] = None) -> "AmusedPipeline":
        from ..compiled import compile_forward

        compile_forward(self.transformer, backend=backend, mode=mode)
        return self

    # ----- what a request will do -----------------------------------------------------------

    @property
    def summary(self) -> PipelineSummary:
        return PipelineSummary(self.config, self.vq.config.downsample, False)

    def uses_critic(self, use_critic: bool = True) -> bool:
        return False  # aMUSEd has no token critic: the keep choice is the model's confidence

    def options(self, **kwargs: Any) -> AmusedOptions:
        """Validated aMUSEd options (`AmusedOptions`), aMUSEd's defaults for the rest."""
        return AmusedOptions(**kwargs)

    # ----- running a request (MusePipeline's public methods call these) ---------------------

    def checked_options(self, options: Optional[AmusedOptions], values: dict[str, Any]) -> AmusedOptions:
        """A request's aMUSEd options: `options` as given (checked when made), else the keyword `values`
        checked now; both at once is an error."""
        if options is None:
            return self.options(**values)
        if not isinstance(options, AmusedOptions):
            raise TypeError(f"options must be an AmusedOptions (made by pipe.options(...)), got {type(options).__name__}")
        if values:
            raise TypeError(f"give the aMUSEd options either as options= or as keywords, not both; "
                            f"got options= and {sorted(values)}")
        return options

    def _request(self, prompt: Union[str, Sequence[str]], negative_prompt: Union[str, Sequence[str], None],
                 settings: Optional[GenerationSettings] = None, options: Optional[AmusedOptions] = None,
                 **kwargs: Any) -> _AmusedRequest:
        options = self.checked_options(options, {k: kwargs.pop(k) for k in EXTRA_OPTIONS if k in kwargs})
        r = super()._request(prompt, negative_prompt, settings, **kwargs)
        return _AmusedRequest(**{f.name: getattr(r, f.name) for f in dataclasses.fields(_Request)}, options=options)

    def _plan(self, name: str, batch: int, known: Optional[torch.Tensor] = None,
              region: Optional[torch.Tensor] = None) -> StagePlan:
        if known is None:
            known = torch.full((batch, self.grid, self.grid), self.mask_id, dtype=torch.long, device=self.device)
            region = torch.ones(batch, self.grid, self.grid, dtype=torch.bool, device=self.device)
        return StagePlan(name, self.transformer, None, known, region)

    def encode_text(self, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """prompts (P) -> pooled (P, D), hidden states (P, L, H) (`ClipText.encode`)."""
        return self.text_encoder.encode(prompts, self.device)

    def bind(self, r: _AmusedRequest) -> Stage:
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
        logits = AmusedLogits(self.transformer, hidden, pooled, micro, scale, (self.grid, self.grid))
        return Stage("base", logits, self.mask_id, None, rules=o.sampler)

    def _token_states(self, r: _AmusedRequest, plans: list[StagePlan],
                      cond_ids: Optional[torch.Tensor] = None) -> Iterator[tuple[int, DecodeState]]:
        """(0, state) for every step of the one stage: muse's stage runner under the request's rules."""
        (plan,) = plans
        for state in run_stage(self.bind(r), plan.known, plan.region, r.settings, r.generator):
            yield 0, state

    @torch.inference_mode()
    def stream_inpaint(self, image: ImageLike, mask: ImageLike, prompt: Union[str, Sequence[str]], *,
                       negative_prompt: Union[str, Sequence[str], None] = None, previews: bool = True,
                       settings: Optional[GenerationSettings] = None, options: Optional[AmusedOptions] = None,
                       **kwargs: Any) -> Iterator[DecodeStep]:
        """Regenerate the white part of `mask` in `image`, aMUSEd's way: the whole image is encoded, the
        tokens whose (Lanczos-resized) mask is at least half white are masked, and the counts start from
        that fraction (linear schedule unless one is given; `settings` are used as they are, schedule
        included). Outside the region the original pixels are returned. An image of another size is
        centre-cropped and resized to the model's (aMUSEd would run at the image's own size), so
        diffusers' ids are reproduced for images of the model's size."""
        if settings is None:
            kwargs.setdefault("schedule", INPAINT_SCHEDULE)
        r = self._request(prompt, negative_prompt, settings, options, **kwargs)
        image, mask = as_pil(image, "image"), as_mask(mask)
        if mask.size != image.size:
            raise ImageError(f"the mask is {mask.width}x{mask.height} pixels but the image is "
                             f"{image.width}x{image.height}; give a mask of the image's size")
        size = self.output_size()
        original = pil_to_tensor([square(to_rgb(image), size)]).to(self.device)
        region = amused_mask_grid(square(mask.convert("L"), size), self.grid).to(self.device)
        if not bool(region.any()):
            raise ImageError("the mask is empty: paint (in white) the part of the image to regenerate")
        known = self.vq.encode(original).expand(r.batch, -1, -1)
        plan = self._plan("base", r.batch, known, region.expand(r.batch, -1, -1))
        for step in self._steps(r, [plan], previews):
            if step.canvas is not None:
                step = dataclasses.replace(step, canvas=self.renderer.paste(step.canvas, original, region))
            yield step


# Buffers older transformers versions saved with CLIP's weights and current ones rebuild: dropped on load.
LEGACY_BUFFERS = ("text_model.embeddings.position_ids",)


def _strict_component(cls: type, config: Any, file: Path, where: str) -> torch.nn.Module:
    """Build `cls` from its config and load `file` strictly: names, shapes and float-ness checked against
    the file's header on the meta device first, NaN or infinite weights refused (muse.hub's checks).
    fp16 files are cast to the model's float32."""
    build = (lambda: cls.from_config(config)) if hasattr(cls, "from_config") else (lambda: cls(config))
    header = read_safetensors_header(file)
    with torch.device("meta"):
        own = build().state_dict()
    legacy = [k for k in LEGACY_BUFFERS if k in header and k not in own]
    header = {k: v for k, v in header.items() if k not in legacy}
    wrong = [f"{k}: file {header[k][1]} vs model {tuple(own[k].shape)}"
             for k in sorted(set(own) & set(header)) if header[k][1] != tuple(own[k].shape)]
    wrong += [f"{k}: file {header[k][0]} vs model {own[k].dtype}" for k in sorted(set(own) & set(header))
              if own[k].is_floating_point() != (header[k][0] in SAFETENSORS_FLOAT)]
    raise_mismatch(sorted(set(own) - set(header)), sorted(set(header) - set(own)), wrong, where)
    state = load_safetensors(file)
    for k in legacy:
        state.pop(k)
    model = build()
    strict_load(model, state, where)
    return model.eval()


def load_components(layout: AmusedLayout, source: str) -> AmusedPipeline:
    """The checked folder's components, loaded from safetensors only."""
    from diffusers import UVit2DModel, VQModel
    from transformers import CLIPTextConfig, CLIPTextModelWithProjection, CLIPTokenizer

    folder = layout.folder
    vqvae = _strict_component(VQModel, layout.configs["vqvae"], layout.weights["vqvae"], str(folder / "vqvae"))
    transformer = _strict_component(UVit2DModel, layout.configs["transformer"], layout.weights["transformer"],
                                    str(folder / "transformer"))
    text_config = CLIPTextConfig.from_dict(layout.configs["text_encoder"])
    text_encoder = _strict_component(CLIPTextModelWithProjection, text_config, layout.weights["text_encoder"],
                                     str(folder / "text_encoder"))
    tokenizer = CLIPTokenizer.from_pretrained(str(folder / "tokenizer"))
    return AmusedPipeline(vqvae, transformer, text_encoder, tokenizer, layout.configs["scheduler"], source)


def save_layout(folder: PathLike, vqvae: torch.nn.Module, transformer: torch.nn.Module, text_encoder: torch.nn.Module,
                tokenizer: Any, scheduler_config: dict[str, Any]) -> Path:
    """Write components in diffusers layout, safetensors only (float32 as stored in memory)."""
    import diffusers

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    vqvae.save_pretrained(folder / "vqvae", safe_serialization=True)
    transformer.save_pretrained(folder / "transformer", safe_serialization=True)
    text_encoder.save_pretrained(folder / "text_encoder", safe_serialization=True)
    if tokenizer is not None:  # None: the caller wrote the tokenizer files
        tokenizer.save_pretrained(folder / "tokenizer")
    (folder / "scheduler").mkdir(exist_ok=True)
    scheduler = {"_class_name": "AmusedScheduler", "_diffusers_version": diffusers.__version__,
                 **{k: v for k, v in scheduler_config.items() if not k.startswith("_")}}
    (folder / "scheduler" / "scheduler_config.json").write_text(json.dumps(scheduler, indent=2) + "\n")
    index = {"_class_name": "AmusedPipeline", "_diffusers_version": diffusers.__version__,
             "scheduler": ["diffusers", "AmusedScheduler"], "text_encoder": ["transformers", "CLIPTextModelWithProjection"],
             "tokenizer": ["transformers", "CLIPTokenizer"], "transformer": ["diffusers", "UVit2DModel"],
             "vqvae": ["diffusers", "VQModel"]}
    (folder / MODEL_INDEX).write_text(json.dumps(index, indent=2) + "\n")
    return folder


def load_amused(source: PathLike, device: Union[str, torch.device, None] = None, revision: Optional[str] = None,
                dtype: Union[str, torch.dtype, None] = "auto", variant: Optional[str] = None) -> AmusedPipeline:
    """`muse.load_pipeline` for aMUSEd weights (licence: OpenRAIL++-M, not muse's)."""
    return AmusedPipeline.from_pretrained(source, device=device, revision=revision, dtype=dtype, variant=variant)


__all__ = ["AmusedPipeline", "AmusedOptions", "AmusedTokenizer", "PalettePreview", "AmusedLogits", "load_amused",
           "AMUSED_DEFAULTS", "LICENSE"]
