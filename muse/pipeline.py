"""Text -> token ids -> image, in two stages (base 32 px, super-res 64 px), plus inpainting.

`MusePipeline` owns the components and turns requests into calls of the sampler in
`muse.sampling`; every public entry validates its settings first and streams `DecodeStep`s.
"""

from __future__ import annotations

import dataclasses
import json
import math
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Optional, Sequence, Union

import torch
from PIL import Image

from .compiled import compile_forward
from .guidance import GuidedCritic, GuidedLogits, guidance_context
from .hub import MAX_CONFIG_BYTES, PathLike, WeightsError, push_folder_to_hub, resolve_folder
from .images import (ImageError, ImageLike, as_mask, as_pil, mask_to_grid, pil_to_tensor, square, tensor_to_pil,
                     to_rgb)
from .preview import PreviewDecoder
from .sampling import SamplerSettings, decode
from .text import DEFAULT_TEXT_ENCODER, TextEncoder
from .transformer import MaskedTransformer, PreparedContext, inference_dtype, native_bf16
from .vq import VQModel

PIPELINE_NAME = "pipeline.json"
DEFAULT_WEIGHTS = Path(__file__).resolve().parent.parent / "weights"
# folder name -> attribute
COMPONENTS = {"vq": "vq", "base": "base_model", "base_critic": "base_critic", "superres": "superres_model",
              "superres_critic": "superres_critic", "preview": "preview_decoder"}
MAX_IMAGES = 16  # per request: prompts x num_images
MAX_TIMESTEPS = 256
MAX_COND_SCALE = 100.0
MAX_TEMPERATURE = 100.0
MASK_GRAY = 0.5  # overlay colour of still-masked tokens in previews
MASK_ALPHA = 0.75


@dataclass
class PipelineConfig:
    """Stored as weights/pipeline.json."""

    text_encoder: str = DEFAULT_TEXT_ENCODER
    text_max_length: Optional[int] = None
    base_size: int = 32
    superres_size: int = 64
    defaults: dict[str, Any] = field(default_factory=dict)  # generation defaults tuned for these weights

    def __post_init__(self) -> None:  # the file may come from an untrusted folder or repo
        if not isinstance(self.text_encoder, str) or not 0 < len(self.text_encoder) <= 1000:
            raise ValueError(f"text_encoder must be a Hub id or folder name, got {self.text_encoder!r}")
        if self.text_max_length is not None and (not isinstance(self.text_max_length, int)
                                                 or isinstance(self.text_max_length, bool)
                                                 or not 1 <= self.text_max_length <= 8192):
            raise ValueError(f"text_max_length must be null or an integer in [1, 8192], got {self.text_max_length!r}")
        for name in ("base_size", "superres_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or not 4 <= value <= 4096:
                raise ValueError(f"{name} must be an integer in [4, 4096], got {value!r}")
        if not isinstance(self.defaults, dict):
            raise ValueError(f"defaults must be a JSON object, got {self.defaults!r}")
        known = {f.name for f in dataclasses.fields(GenerationSettings)}
        GenerationSettings(**{k: v for k, v in self.defaults.items() if k in known})  # raises if out of range


@dataclass
class GenerationSettings:
    """Everything a request may set; validated on creation."""

    timesteps: int = 12
    cond_scale: float = 3.0
    temperature: float = 1.0
    topk_filter_thres: float = 0.9
    critic_noise_scale: float = 1.0
    use_critic: bool = True
    schedule: Any = "cosine"
    superres: bool = True
    seed: Optional[int] = None
    num_images: int = 1
    choice_temperature: float = 4.5
    can_remask_prev_masked: bool = False

    def __post_init__(self) -> None:
        def number(name: str, lo: float, hi: float) -> None:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
                    or not (lo <= value <= hi):
                raise ValueError(f"{name} must be a finite number in [{lo}, {hi}], got {value!r}")

        def integer(name: str, lo: int, hi: int) -> None:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not (lo <= value <= hi):
                raise ValueError(f"{name} must be an integer in [{lo}, {hi}], got {value!r}")

        integer("timesteps", 1, MAX_TIMESTEPS)
        integer("num_images", 1, MAX_IMAGES)
        number("cond_scale", 0.0, MAX_COND_SCALE)
        number("temperature", 0.0, MAX_TEMPERATURE)
        number("critic_noise_scale", 0.0, MAX_TEMPERATURE)
        number("choice_temperature", 0.0, MAX_TEMPERATURE)
        if self.seed is not None:
            integer("seed", 0, 2**63 - 1)
        for name in ("use_critic", "superres", "can_remask_prev_masked"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be True or False, got {getattr(self, name)!r}")
        self.sampler()  # validates the schedule and the top-k threshold

    def sampler(self) -> SamplerSettings:
        return SamplerSettings(timesteps=self.timesteps, temperature=float(self.temperature),
                               topk_filter_thres=float(self.topk_filter_thres), schedule=self.schedule,
                               critic_noise_scale=float(self.critic_noise_scale),
                               choice_temperature=float(self.choice_temperature),
                               can_remask_prev_masked=self.can_remask_prev_masked)


@dataclass
class DecodeStep:
    """One decoding step of one stage. Grids are (B, h, w); images are PIL, one per row."""

    stage: str  # "base" or "superres"
    stage_index: int  # 0-based among this request's stages
    num_stages: int
    step: int  # 1-based
    total: int
    ids: torch.Tensor  # long; mask_id where still masked
    pred_ids: torch.Tensor  # long; the model's full prediction
    masked: torch.Tensor  # bool; still masked after this step
    revealed: torch.Tensor  # bool; fixed at this step
    scores: torch.Tensor  # float; keep scores the sampler used (higher = kept)
    region: torch.Tensor  # bool; positions this stage generates (all, except when inpainting)
    seed: int
    canvas: Optional[list[Image.Image]] = None  # current image, still-masked tokens greyed
    prediction: Optional[list[Image.Image]] = None  # still-masked tokens filled with the model's guess
    is_final: bool = False  # the last step of the last stage: canvas holds the result

    @property
    def num_tokens(self) -> int:
        return int(self.region[0].sum())

    @property
    def num_fixed(self) -> int:
        return int((self.region[0] & ~self.masked[0]).sum())

    @property
    def label(self) -> str:
        return f"{self.stage} {self.step}/{self.total} · {self.num_fixed} of {self.num_tokens} tokens fixed"


def _check_device(device: Union[str, torch.device, None]) -> torch.device:
    """The device to run on (None: CUDA when present, else CPU); a clear error for one that is not here."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"unknown device {device!r}; use 'cpu', 'cuda' or 'cuda:N'") from None
    available = {"cpu": True, "cuda": torch.cuda.is_available(),
                 "mps": bool(getattr(torch.backends, "mps", None)) and torch.backends.mps.is_available()}
    if not available.get(device.type, True):
        raise ValueError(f"device {str(device)!r} is not available on this machine")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise ValueError(f"device {str(device)!r} does not exist (this machine has {torch.cuda.device_count()} GPUs)")
    return device


def _prompts(prompt: Union[str, Sequence[str]]) -> list[str]:
    if isinstance(prompt, str):
        return [prompt]
    if isinstance(prompt, (list, tuple)) and prompt and all(isinstance(p, str) for p in prompt):
        return list(prompt)
    raise TypeError("prompt must be a string or a non-empty list of strings")


class MusePipeline:
    """The two-stage MUSE model: tokenizer, text encoder, base and super-res transformers, critics."""

    def __init__(self, vq: VQModel, base: MaskedTransformer, text_encoder: Optional[TextEncoder] = None,
                 superres: Optional[MaskedTransformer] = None, base_critic: Optional[MaskedTransformer] = None,
                 superres_critic: Optional[MaskedTransformer] = None, config: Optional[PipelineConfig] = None,
                 preview: Optional[PreviewDecoder] = None):
        self.config = config or PipelineConfig()
        # Intermediate previews through the tiny distilled decoder when there is one (`muse.preview`);
        # False decodes them with the full tokenizer decoder. Final images always use the full one.
        self.preview_decoder = preview.eval() if preview else None
        self.fast_previews = True
        self.vq, self.base_model = vq.eval(), base.eval()
        self.superres_model = superres.eval() if superres else None
        self.base_critic = base_critic.eval() if base_critic else None
        self.superres_critic = superres_critic.eval() if superres_critic else None
        self.text_encoder = text_encoder or TextEncoder(self.config.text_encoder, self.config.text_max_length)
        self._check_compatible()

    # ----- construction and I/O -----------------------------------------------------------

    def _check_compatible(self) -> None:
        f = self.vq.config.downsample
        k = self.vq.codebook_size
        p = self.preview_decoder
        if p is not None and (p.config.code_dim != self.vq.config.code_dim or p.config.downsample != f):
            raise WeightsError(f"preview decoder (code_dim {p.config.code_dim}, downsample {p.config.downsample}) "
                               f"does not fit the tokenizer (code_dim {self.vq.config.code_dim}, downsample {f})")
        stages = [("base", self.base_model, self.config.base_size, 0), ("base_critic", self.base_critic, self.config.base_size, 0)]
        if self.superres_model is not None:
            cond = (self.config.base_size // f) ** 2
            stages += [("superres", self.superres_model, self.config.superres_size, cond),
                       ("superres_critic", self.superres_critic, self.config.superres_size, cond)]
        for name, model, size, cond in stages:
            if model is None:
                continue
            c = model.config
            problems = []
            if c.num_tokens != k:
                problems.append(f"num_tokens {c.num_tokens} != codebook size {k}")
            if c.seq_len != (size // f) ** 2:
                problems.append(f"seq_len {c.seq_len} != ({size}/{f})**2")
            if c.cond_seq_len != cond:
                problems.append(f"cond_seq_len {c.cond_seq_len} != {cond}")
            if c.text_dim != self.text_encoder.dim:
                problems.append(f"text_dim {c.text_dim} != text encoder width {self.text_encoder.dim}")
            if name.endswith("critic") and c.kind != "critic":
                problems.append("is not a critic")
            if not name.endswith("critic") and c.kind != "generator":
                problems.append("is not a generator")
            if problems:
                raise WeightsError(f"{name} does not fit this pipeline: " + "; ".join(problems))

    @property
    def device(self) -> torch.device:
        return next(self.base_model.parameters()).device

    def to(self, device: Union[str, torch.device], dtype: Optional[torch.dtype] = None) -> "MusePipeline":
        """Move every component to `device`; `dtype` also casts the transformers (the decoders stay float32)."""
        for attr in COMPONENTS.values():
            model = getattr(self, attr)
            if model is not None:
                model.to(device)
                if dtype is not None and attr not in ("vq", "preview_decoder"):  # both tiny, kept float32
                    model.to(dtype)
        self.text_encoder.to(device)
        return self

    def compile(self, backend: Any = "inductor", mode: Optional[str] = None) -> "MusePipeline":
        """Run the transformers through `torch.compile` (see `muse.compiled`): meant for a GPU; on a CPU
        it was measured not to pay. The first request compiles (70 s for the shipped pipeline on a
        2-core CPU); a compilation failure falls back to eager with a warning."""
        for attr in ("base_model", "superres_model", "base_critic", "superres_critic"):
            model = getattr(self, attr)
            if model is not None:
                compile_forward(model, backend=backend, mode=mode)
        return self

    def save_pretrained(self, folder: PathLike) -> Path:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        for name, attr in COMPONENTS.items():
            model = getattr(self, attr)
            if model is not None:
                model.save_pretrained(folder / name)
        (folder / PIPELINE_NAME).write_text(json.dumps(dataclasses.asdict(self.config), indent=2) + "\n")
        return folder

    @classmethod
    def from_pretrained(cls, source: Optional[PathLike] = None, device: Union[str, torch.device, None] = None,
                        revision: Optional[str] = None, text_encoder: Optional[TextEncoder] = None,
                        dtype: Union[str, torch.dtype, None] = "auto") -> "MusePipeline":
        """Load from a folder or a Hub repo id; None means the shipped `weights/`.

        dtype "auto" runs the transformers in bfloat16 where the device computes it natively, else float32
        (see `muse.transformer.inference_dtype`); None keeps the stored float32."""
        device = _check_device(device)
        if source is None:
            source = DEFAULT_WEIGHTS
            if not (DEFAULT_WEIGHTS / PIPELINE_NAME).is_file():
                raise WeightsError(f"the shipped model is missing: no {PIPELINE_NAME} in {DEFAULT_WEIGHTS}")
        folder = resolve_folder(source, revision=revision)
        spec = folder / PIPELINE_NAME
        if not spec.is_file():
            raise WeightsError(f"{folder} is not a muse pipeline: missing {PIPELINE_NAME}")
        if spec.stat().st_size > MAX_CONFIG_BYTES:
            raise WeightsError(f"{spec} is implausibly large for a pipeline config")
        try:
            raw = json.loads(spec.read_text(encoding="utf-8"))
            if not isinstance(raw, dict):
                raise TypeError("it must hold a JSON object")
            config = PipelineConfig(**raw)
        except (json.JSONDecodeError, TypeError, ValueError, UnicodeDecodeError) as err:
            raise WeightsError(f"{spec} is not a valid pipeline config: {err}") from None
        parts: dict[str, Any] = {}
        for name in COMPONENTS:
            if (folder / name).is_dir():
                model_cls = {"vq": VQModel, "preview": PreviewDecoder}.get(name, MaskedTransformer)
                parts[name] = model_cls.from_pretrained(folder / name)
        for required in ("vq", "base"):
            if required not in parts:
                raise WeightsError(f"{folder} has no {required}/ component")
        pipe = cls(text_encoder=text_encoder, config=config, **parts)
        if dtype == "auto":
            dtype = inference_dtype(device)
        return pipe.to(device, dtype)

    def push_to_hub(self, repo_id: str, *, private: bool = True, token: Optional[str] = None) -> str:
        return push_folder_to_hub(self.save_pretrained, repo_id, private=private, token=token,
                                  commit_message="Upload muse pipeline")

    # ----- helpers ------------------------------------------------------------------------

    def settings(self, **kwargs: Any) -> GenerationSettings:
        """Validated settings: the weights' tuned defaults, overridden by the caller's."""
        known = {f.name for f in dataclasses.fields(GenerationSettings)}
        unknown = sorted(set(kwargs) - known)
        if unknown:
            raise TypeError(f"unknown setting(s) {unknown}; known: {sorted(known)}")
        defaults = {k: v for k, v in self.config.defaults.items() if k in known}
        return GenerationSettings(**{**defaults, **kwargs})

    def _generator(self, seed: Optional[int]) -> tuple[torch.Generator, int]:
        seed = secrets.randbits(31) if seed is None else seed
        return torch.Generator(device=self.device).manual_seed(seed), seed

    def _contexts(self, prompts: list[str], negative_prompt: Union[str, Sequence[str], None], repeat: int,
                  models: list[Optional[MaskedTransformer]], cond_ids: Optional[torch.Tensor],
                  cond_scale: float) -> list[Optional[PreparedContext]]:
        """Encode the text once and project it once per model, guidance halves included."""
        negatives = None
        if negative_prompt is not None:
            negatives = _prompts(negative_prompt)
            if len(negatives) == 1:
                negatives = negatives * len(prompts)
            if len(negatives) != len(prompts):
                raise ValueError(f"got {len(negatives)} negative prompts for {len(prompts)} prompts")
        use_negative = negatives is not None and cond_scale != 1
        embeds, mask = self.text_encoder(prompts + negatives if use_negative else prompts)
        embeds, mask = embeds.to(self.device), mask.to(self.device)
        b = len(prompts)
        cond_e, cond_m = embeds[:b], mask[:b]
        if use_negative:
            null_e, null_m = embeds[b:], mask[b:]
        else:  # the null context: nothing but the learned null key/value is attended
            null_e, null_m = torch.zeros_like(cond_e), torch.zeros_like(cond_m)
        cond_e, cond_m = cond_e.repeat_interleave(repeat, 0), cond_m.repeat_interleave(repeat, 0)
        null_e, null_m = null_e.repeat_interleave(repeat, 0), null_m.repeat_interleave(repeat, 0)
        out = []
        for model in models:
            if model is None:
                out.append(None)
                continue
            ids = cond_ids if model.config.cond_seq_len else None
            cond = model.prepare_context(cond_e, cond_m, ids)
            uncond = model.prepare_context(null_e, null_m, ids) if cond_scale != 1 else cond
            out.append(guidance_context(cond, uncond, cond_scale))
        return out

    def _render(self, ids: torch.Tensor, pred_ids: torch.Tensor, masked: torch.Tensor,
                preview: bool = False) -> tuple[list, list]:
        """The canvas (still-masked tokens greyed) and the prediction (every still-masked token filled
        with the model's current guess), from one decode: they are the same token grid.

        Previews decode with the tiny preview decoder when the pipeline has one (and fast_previews is
        on), else with the tokenizer's decoder in bfloat16 where the device computes it natively; the
        final image always decodes with the full decoder in float32.
        """
        filled = torch.where(masked, pred_ids, ids)
        if preview and self.fast_previews and self.preview_decoder is not None:
            prediction = self.preview_decoder.decode(self.vq, filled)  # (B, 3, H, W), ~1/15 of the cost
        else:
            fast = preview and native_bf16(self.device)
            with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=fast):
                prediction = self.vq.decode(filled).float()  # (B, 3, H, W)
        if not bool(masked.any()):
            images = tensor_to_pil(prediction)
            return images, images
        f = self.vq.config.downsample
        cover = masked[:, None].float().repeat_interleave(f, 2).repeat_interleave(f, 3)  # (B, 1, H, W)
        canvas = prediction * (1 - MASK_ALPHA * cover) + MASK_GRAY * MASK_ALPHA * cover
        return tensor_to_pil(canvas), tensor_to_pil(prediction)

    def _run_stage(self, stage: str, index: int, num_stages: int, model: MaskedTransformer,
                   critic: Optional[MaskedTransformer], context: PreparedContext,
                   critic_context: Optional[PreparedContext], init_ids: torch.Tensor, region: torch.Tensor,
                   s: GenerationSettings, generator: torch.Generator, seed: int, previews: bool,
                   out: dict) -> Iterator[DecodeStep]:
        grid = model.config.grid
        b = init_ids.shape[0]
        logits_fn = GuidedLogits(model, context, s.cond_scale)
        critic_fn = None
        if s.use_critic:
            if critic is not None:
                critic_fn = GuidedCritic(critic, critic_context, s.cond_scale)
            elif model.config.self_critic:
                critic_fn = GuidedCritic(model, context, s.cond_scale)
        last = index == num_stages - 1
        state = None
        for state in decode(logits_fn, init_ids.reshape(b, -1), region.reshape(b, -1), model.mask_id,
                            s.sampler(), generator, critic_fn):
            shape = (b, grid, grid)
            ids, pred = state.ids.view(shape), state.pred_ids.view(shape)
            masked = state.masked.view(shape)
            final = last and state.step == state.total
            canvas = prediction = None
            if previews or final:
                canvas, prediction = self._render(ids, pred, masked, preview=not final)
            yield DecodeStep(stage=stage, stage_index=index, num_stages=num_stages, step=state.step,
                             total=state.total, ids=ids, pred_ids=pred, masked=masked,
                             revealed=state.revealed.view(shape), scores=state.scores.view(shape),
                             region=region.view(shape), seed=seed, canvas=canvas, prediction=prediction,
                             is_final=final)
        out["ids"] = state.ids.view(b, grid, grid)

    def _two_stage(self, prompts: list[str], negative_prompt, s: GenerationSettings, previews: bool,
                   base_known: Optional[torch.Tensor], base_region: Optional[torch.Tensor],
                   sr_known: Optional[torch.Tensor], sr_region: Optional[torch.Tensor],
                   run_base: bool = True, cond_ids: Optional[torch.Tensor] = None) -> Iterator[DecodeStep]:
        """The shared body of text-to-image, inpainting and super-res."""
        use_sr = s.superres and self.superres_model is not None
        if not run_base and not use_sr:
            raise ValueError("super-res needs a pipeline with a super-res stage")
        generator, seed = self._generator(s.seed)
        b = len(prompts) * s.num_images
        f = self.vq.config.downsample
        num_stages = int(run_base) + int(use_sr)
        index = 0
        if run_base:
            g = self.config.base_size // f
            known = base_known if base_known is not None else torch.zeros(b, g, g, dtype=torch.long, device=self.device)
            region = base_region if base_region is not None else torch.ones(b, g, g, dtype=torch.bool, device=self.device)
            ctx, critic_ctx = self._contexts(prompts, negative_prompt, s.num_images, [self.base_model, self.base_critic],
                                             None, s.cond_scale)
            out: dict = {}
            yield from self._run_stage("base", 0, num_stages, self.base_model, self.base_critic, ctx, critic_ctx,
                                       known, region, s, generator, seed, previews, out)
            cond_ids = out["ids"]
            index = 1
        if use_sr:
            g = self.config.superres_size // f
            known = sr_known if sr_known is not None else torch.zeros(b, g, g, dtype=torch.long, device=self.device)
            region = sr_region if sr_region is not None else torch.ones(b, g, g, dtype=torch.bool, device=self.device)
            flat_cond = cond_ids.reshape(b, -1)
            ctx, critic_ctx = self._contexts(prompts, negative_prompt, s.num_images,
                                             [self.superres_model, self.superres_critic], flat_cond, s.cond_scale)
            yield from self._run_stage("superres", index, num_stages, self.superres_model, self.superres_critic, ctx,
                                       critic_ctx, known, region, s, generator, seed, previews, {})

    @staticmethod
    def _final(steps: Iterator[DecodeStep]) -> list[Image.Image]:
        result = None
        for step in steps:
            if step.is_final:
                result = step.canvas
        return result

    # ----- public API ---------------------------------------------------------------------

    @torch.inference_mode()
    def stream(self, prompt: Union[str, Sequence[str]], *, negative_prompt: Union[str, Sequence[str], None] = None,
               previews: bool = True, **kwargs: Any) -> Iterator[DecodeStep]:
        """Text to image, one DecodeStep per step of each stage; the last has is_final and the images."""
        prompts, s = _prompts(prompt), self.settings(**kwargs)
        self._check_batch(prompts, s)
        yield from self._two_stage(prompts, negative_prompt, s, previews, None, None, None, None)

    def __call__(self, prompt: Union[str, Sequence[str]], **kwargs: Any) -> list[Image.Image]:
        """Text to image: one image per prompt, times num_images (64 px, or 32 px with superres=False)."""
        return self._final(self.stream(prompt, previews=False, **kwargs))

    @torch.inference_mode()
    def stream_inpaint(self, image: ImageLike, mask: ImageLike, prompt: Union[str, Sequence[str]], *,
                       negative_prompt: Union[str, Sequence[str], None] = None, previews: bool = True,
                       **kwargs: Any) -> Iterator[DecodeStep]:
        """Regenerate the white part of `mask` in `image`, base stage then super-res, known tokens fixed."""
        prompts, s = _prompts(prompt), self.settings(**kwargs)
        self._check_batch(prompts, s)
        b = len(prompts) * s.num_images
        f = self.vq.config.downsample
        image, mask = as_pil(image, "image"), as_mask(mask)
        if mask.size != image.size:
            raise ImageError(f"the mask is {mask.width}x{mask.height} pixels but the image is "
                             f"{image.width}x{image.height}; give a mask of the image's size")
        rgb = to_rgb(image)
        sizes = (self.config.base_size, self.config.superres_size)
        small, large = (pil_to_tensor([square(rgb, n)]).to(self.device) for n in sizes)
        base_region = mask_to_grid(mask, sizes[0] // f).to(self.device)
        sr_region = mask_to_grid(mask, sizes[1] // f).to(self.device)
        if not bool(base_region.any()):
            raise ImageError("the mask is empty: paint (in white) the part of the image to regenerate "
                             "(uint8 masks: 255 = regenerate; bool and other integer masks: non-zero)")
        # Nothing under the mask may reach the fill: the region's pixels are blanked before encoding
        # (the encoder's receptive field would otherwise carry them into neighbouring known tokens),
        # masked positions enter the network as mask tokens, and super-res is conditioned on the
        # base stage's new low-res tokens.
        base_known = self.vq.encode(self._blank(small, base_region)).expand(b, -1, -1)
        sr_known = self.vq.encode(self._blank(large, sr_region)).expand(b, -1, -1)
        steps = self._two_stage(prompts, negative_prompt, s, previews, base_known,
                                base_region.expand(b, -1, -1), sr_known, sr_region.expand(b, -1, -1))
        for step in steps:
            if step.canvas is not None:
                # Outside the region, show and return the original pixels exactly (the tokens there are
                # fixed anyway; their decode is only the tokenizer's approximation of them).
                stage_region, stage_original = (base_region, small) if step.stage == "base" else (sr_region, large)
                keep = ~stage_region.repeat_interleave(f, 0).repeat_interleave(f, 1)
                result = torch.where(keep, stage_original, pil_to_tensor(step.canvas).to(self.device))
                step = dataclasses.replace(step, canvas=tensor_to_pil(result))
            yield step

    def _blank(self, images: torch.Tensor, region: torch.Tensor) -> torch.Tensor:
        """White out the token cells of `region` (h, w) in images (B, 3, H, W)."""
        f = self.vq.config.downsample
        cover = region.repeat_interleave(f, 0).repeat_interleave(f, 1)
        return images.masked_fill(cover, 1.0)

    def inpaint(self, image: ImageLike, mask: ImageLike, prompt: Union[str, Sequence[str]],
                **kwargs: Any) -> list[Image.Image]:
        return self._final(self.stream_inpaint(image, mask, prompt, previews=False, **kwargs))

    @torch.inference_mode()
    def stream_superres(self, low_res_image: ImageLike, prompt: Union[str, Sequence[str]], *,
                        negative_prompt: Union[str, Sequence[str], None] = None, previews: bool = True,
                        **kwargs: Any) -> Iterator[DecodeStep]:
        """Super-res stage alone, conditioned on an image (resized to the base size) and a prompt."""
        if self.superres_model is None:
            raise ValueError("this pipeline has no super-res stage")
        prompts, s = _prompts(prompt), self.settings(**{**kwargs, "superres": True})
        self._check_batch(prompts, s)
        b = len(prompts) * s.num_images
        small = pil_to_tensor([square(to_rgb(low_res_image), self.config.base_size)]).to(self.device)
        cond_ids = self.vq.encode(small).expand(b, -1, -1)
        yield from self._two_stage(prompts, negative_prompt, s, previews, None, None, None, None,
                                   run_base=False, cond_ids=cond_ids)

    def superres(self, low_res_image: ImageLike, prompt: Union[str, Sequence[str]],
                       **kwargs: Any) -> list[Image.Image]:
        return self._final(self.stream_superres(low_res_image, prompt, previews=False, **kwargs))

    @staticmethod
    def _check_batch(prompts: list[str], s: GenerationSettings) -> None:
        if len(prompts) * s.num_images > MAX_IMAGES:
            raise ValueError(f"at most {MAX_IMAGES} images per request (prompts x num_images), "
                             f"got {len(prompts) * s.num_images}")


def load_pipeline(source: Optional[PathLike] = None, device: Union[str, torch.device, None] = None,
                  revision: Optional[str] = None, dtype: Union[str, torch.dtype, None] = "auto") -> MusePipeline:
    """The shipped model (None), a local folder, or a Hub repo id."""
    return MusePipeline.from_pretrained(source, device=device, revision=revision, dtype=dtype)
