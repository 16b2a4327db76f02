"""Text -> token ids -> image, in two stages (base 32 px, super-res 64 px), plus inpainting.

`MusePipeline` owns the components and turns a request into stage plans. The token-level work goes
through the stage runner (`muse.runner`), the pixels through the renderer (`muse.render`), loading and
its checks through `muse.loader`, and the settings through the one schema (`muse.settings`). Every
public entry validates its settings first and streams `DecodeStep`s; token ids are a public output
too (`output_type="ids"`).
"""

from __future__ import annotations

import dataclasses
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Optional, Sequence, Union

import torch
from PIL import Image

from .compiled import compile_forward
from .guidance import is_guided
from .hub import PathLike, push_folder_to_hub
from .images import (ImageError, ImageLike, as_mask, as_pil, mask_to_grid, pil_to_tensor, square, tensor_to_pil,
                     to_rgb)
from .loader import (COMPONENTS, DEFAULT_WEIGHTS, PIPELINE_NAME, PipelineConfig, PipelineSummary, check_compatible,
                     check_device, load_components, save_pipeline_config)
from .preview import PreviewDecoder
from .render import Renderer
from .runner import StagePlan, TextContext, has_critic, run_stages
from .sampling import DecodeState
from .settings import MAX_IMAGES, SCHEMA, GenerationSettings, known_settings
from .text import TextEncoder
from .transformer import MaskedTransformer, inference_dtype
from .vq import VQModel

__all__ = ["MusePipeline", "DecodeStep", "PipelineConfig", "GenerationSettings", "load_pipeline", "DEFAULT_WEIGHTS",
           "PIPELINE_NAME"]

# folder name -> attribute
ATTRIBUTES = {"vq": "vq", "base": "base_model", "base_critic": "base_critic", "superres": "superres_model",
              "superres_critic": "superres_critic", "preview": "preview_decoder"}
OUTPUT_TYPES = ("pil", "ids")


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
    # current image, still-masked tokens greyed; at a stage's last step, the full decoder's image
    canvas: Optional[list[Image.Image]] = None
    prediction: Optional[list[Image.Image]] = None  # still-masked tokens filled with the model's guess
    is_final: bool = False  # the last step of the last stage: canvas holds the result
    # The parts of the keep score (see `muse.sampling.DecodeState`), NaN where the sampler did not choose:
    log_probs: Optional[torch.Tensor] = None  # float; the model's log-probability of its sampled token
    critic_scores: Optional[torch.Tensor] = None  # float; the critic's "token is wrong" logit; None: no critic pass
    keep_noise: Optional[torch.Tensor] = None  # float; the random term the sampler added to the keep score

    @property
    def num_tokens(self) -> int:
        return int(self.region[0].sum())

    @property
    def num_fixed(self) -> int:
        return int((self.region[0] & ~self.masked[0]).sum())

    @property
    def label(self) -> str:
        return f"{self.stage} {self.step}/{self.total} · {self.num_fixed} of {self.num_tokens} tokens fixed"


def _prompts(prompt: Union[str, Sequence[str]], what: str = "prompt") -> list[str]:
    if isinstance(prompt, str):
        return [prompt]
    if isinstance(prompt, (list, tuple)) and prompt and all(isinstance(p, str) for p in prompt):
        return list(prompt)
    raise TypeError(f"{what} must be a string or a non-empty list of strings")


def _negatives(negative_prompt: Union[str, Sequence[str], None], count: int) -> Optional[list[str]]:
    """One negative prompt per prompt (a single one is shared), or None."""
    if negative_prompt is None:
        return None
    negatives = _prompts(negative_prompt, "negative_prompt")
    if len(negatives) == 1:
        negatives = negatives * count
    if len(negatives) != count:
        raise ValueError(f"got {len(negatives)} negative prompts for {count} prompts")
    return negatives


@dataclass
class _Request:
    """A validated request: its prompts, settings, batch size and seeded generator."""

    prompts: list[str]
    negatives: Optional[list[str]]
    settings: GenerationSettings
    generator: torch.Generator
    seed: int

    @property
    def batch(self) -> int:
        return len(self.prompts) * self.settings.num_images


class MusePipeline:
    """The two-stage MUSE model: tokenizer, text encoder, base and super-res transformers, critics."""

    def __init__(self, vq: VQModel, base: MaskedTransformer, text_encoder: Optional[TextEncoder] = None,
                 superres: Optional[MaskedTransformer] = None, base_critic: Optional[MaskedTransformer] = None,
                 superres_critic: Optional[MaskedTransformer] = None, config: Optional[PipelineConfig] = None,
                 preview: Optional[PreviewDecoder] = None):
        self.config = config or PipelineConfig()
        self.vq, self.base_model = vq.eval(), base.eval()
        self.superres_model = superres.eval() if superres else None
        self.base_critic = base_critic.eval() if base_critic else None
        self.superres_critic = superres_critic.eval() if superres_critic else None
        self.text_encoder = text_encoder or TextEncoder(self.config.text_encoder, self.config.text_max_length)
        self.renderer = Renderer(self.vq, preview.eval() if preview else None)
        check_compatible(self.config, self.text_encoder.dim, self.vq, self.base_model, self.superres_model,
                         self.base_critic, self.superres_critic, self.renderer.preview_decoder)

    # ----- construction and I/O -----------------------------------------------------------

    @property
    def preview_decoder(self) -> Optional[PreviewDecoder]:
        return self.renderer.preview_decoder

    @property
    def fast_previews(self) -> bool:
        """Step previews through the tiny preview decoder (when there is one); False: the full decoder."""
        return self.renderer.fast_previews

    @fast_previews.setter
    def fast_previews(self, value: bool) -> None:
        self.renderer.fast_previews = bool(value)

    @property
    def match_low_res(self) -> bool:
        """A super-res stage's final image matched to the low-res image it enlarges (back-projection,
        `muse.render.match_low_res`); False: the tokenizer's decode of the stage's tokens alone."""
        return self.renderer.match_low_res

    @match_low_res.setter
    def match_low_res(self, value: bool) -> None:
        self.renderer.match_low_res = bool(value)

    @property
    def device(self) -> torch.device:
        return next(self.base_model.parameters()).device

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

    def push_to_hub(self, repo_id: str, *, private: bool = True, token: Optional[str] = None) -> str:
        return push_folder_to_hub(self.save_pretrained, repo_id, private=private, token=token,
                                  commit_message="Upload muse pipeline")

    # ----- what a request will do (for callers that describe it before running it) --------

    def settings(self, **kwargs: Any) -> GenerationSettings:
        """Validated settings: the weights' tuned defaults, overridden by the caller's."""
        unknown = sorted(set(kwargs) - set(SCHEMA))
        if unknown:
            raise TypeError(f"unknown setting(s) {unknown}; known: {sorted(SCHEMA)}")
        return GenerationSettings(**{**known_settings(self.config.defaults), **kwargs})

    @property
    def summary(self) -> PipelineSummary:
        """Sizes and stages, as `muse.loader.describe` reads them from a folder."""
        return PipelineSummary(self.config, self.vq.config.downsample, self.superres_model is not None)

    def stage_names(self, superres: bool = True) -> list[str]:
        """The stages text to image runs: base, then super-res when asked for and present."""
        return self.summary.stage_names(superres)

    def output_size(self, superres: bool = True) -> int:
        """Side in pixels of the images text to image and inpainting return."""
        return self.summary.output_size(superres)

    def token_counts(self, superres: bool = True) -> dict[str, int]:
        """Tokens each stage generates, by stage name."""
        return self.summary.token_counts(superres)

    def uses_critic(self, use_critic: bool = True) -> bool:
        """Whether `use_critic` puts a critic in charge of the keep choice (else the model's confidence)."""
        return bool(use_critic) and has_critic(self.base_model, self.base_critic)

    # ----- running a request ----------------------------------------------------------------

    def checked_settings(self, settings: Optional[GenerationSettings], values: dict[str, Any]) -> GenerationSettings:
        """A request's settings: `settings` as given (checked when `settings(...)` made it), else the
        keyword `values` checked now; both at once is an error."""
        if settings is None:
            return self.settings(**values)
        if not isinstance(settings, GenerationSettings):
            raise TypeError(f"settings must be a GenerationSettings (made by pipe.settings(...)), "
                            f"got {type(settings).__name__}")
        if values:
            raise TypeError(f"give the settings either as settings= or as keywords, not both; "
                            f"got settings= and {sorted(values)}")
        return settings

    def _request(self, prompt: Union[str, Sequence[str]], negative_prompt: Union[str, Sequence[str], None],
                 settings: Optional[GenerationSettings] = None, **kwargs: Any) -> _Request:
        prompts, s = _prompts(prompt), self.checked_settings(settings, kwargs)
        if len(prompts) * s.num_images > MAX_IMAGES:
            raise ValueError(f"at most {MAX_IMAGES} images per request (prompts x num_images), "
                             f"got {len(prompts) * s.num_images}")
        negatives = _negatives(negative_prompt, len(prompts))
        seed = secrets.randbits(31) if s.seed is None else s.seed
        return _Request(prompts, negatives, s, torch.Generator(device=self.device).manual_seed(seed), seed)

    def _plan(self, name: str, batch: int, known: Optional[torch.Tensor] = None,
              region: Optional[torch.Tensor] = None) -> StagePlan:
        """A stage over the whole grid unless `known` ids and a `region` (both (B, h, w)) are given."""
        model, critic = (self.base_model, self.base_critic) if name == "base" else             (self.superres_model, self.superres_critic)
        side = model.config.grid
        if known is None:
            known = torch.zeros(batch, side, side, dtype=torch.long, device=self.device)
            region = torch.ones(batch, side, side, dtype=torch.bool, device=self.device)
        return StagePlan(name, model, critic, known, region)

    def _text_to_image(self, r: _Request) -> list[StagePlan]:
        return [self._plan(name, r.batch) for name in self.stage_names(r.settings.superres)]

    def _token_states(self, r: _Request, plans: list[StagePlan],
                      cond_ids: Optional[torch.Tensor] = None) -> Iterator[tuple[int, DecodeState]]:
        """(stage index, state) for every step of every planned stage: the stage runner, text encoded once."""
        negatives = r.negatives if is_guided(r.settings.cond_scale) else None
        text = TextContext.encode(self.text_encoder, r.prompts, negatives, r.settings.num_images, self.device)
        return run_stages(plans, text, r.settings, r.generator, cond_ids)

    def _steps(self, r: _Request, plans: list[StagePlan], previews: bool, cond_ids: Optional[torch.Tensor] = None,
               low_res: Optional[torch.Tensor] = None) -> Iterator[DecodeStep]:
        """The token states as DecodeSteps, with their pictures (every step with previews, else the last
        step of each stage). A stage's last step is drawn by the full decoder; a super-res stage's final
        image is matched to its low-res input (`Renderer.match_low_res`): `low_res` (B, 3, h, w) when given,
        else the base stage's final image, that same decode."""
        last = len(plans) - 1
        for index, state in self._token_states(r, plans, cond_ids):
            final = index == last and state.step == state.total
            canvas = prediction = None
            if index < last and state.step == state.total:
                # A stage's result, handed on: decoded once, shown as the stage's last step (the playground's
                # "before") and enlarged by the super-res stage.
                image = self.renderer.decode(state.ids)
                canvas = prediction = tensor_to_pil(image)
                if plans[index + 1].name == "superres":
                    low_res = image
            elif previews or final:
                canvas, prediction = self.renderer.step_images(
                    state.ids, state.pred_ids, state.masked, preview=not final,
                    low_res=low_res if final and plans[index].name == "superres" else None)
            yield DecodeStep(stage=plans[index].name, stage_index=index, num_stages=len(plans), step=state.step,
                             total=state.total, ids=state.ids, pred_ids=state.pred_ids, masked=state.masked,
                             revealed=state.revealed, scores=state.scores, region=plans[index].region,
                             seed=r.seed, canvas=canvas, prediction=prediction, is_final=final,
                             log_probs=state.log_probs, critic_scores=state.critic_scores,
                             keep_noise=state.keep_noise)

    @staticmethod
    def _output(steps: Iterator[DecodeStep], output_type: str) -> Union[list[Image.Image], torch.Tensor]:
        """The final images ("pil") or the last stage's final token ids, long (B, h, w) ("ids")."""
        final = None
        for step in steps:
            final = step
        return final.ids if output_type == "ids" else final.canvas

    @staticmethod
    def _check_output_type(output_type: str) -> None:
        if output_type not in OUTPUT_TYPES:
            raise ValueError(f"output_type must be one of {', '.join(OUTPUT_TYPES)}, got {output_type!r}")

    # ----- public API ---------------------------------------------------------------------

    @torch.inference_mode()
    def stream(self, prompt: Union[str, Sequence[str]], *, negative_prompt: Union[str, Sequence[str], None] = None,
               previews: bool = True, settings: Optional[GenerationSettings] = None,
               **kwargs: Any) -> Iterator[DecodeStep]:
        """Text to image, one DecodeStep per step of each stage; the last has is_final and the images.

        The settings are keywords (`GenerationSettings`' fields), or `settings`: one made by `settings(...)`,
        used as it is."""
        r = self._request(prompt, negative_prompt, settings, **kwargs)
        yield from self._steps(r, self._text_to_image(r), previews)

    @torch.inference_mode()
    def __call__(self, prompt: Union[str, Sequence[str]], *, output_type: str = "pil",
                 negative_prompt: Union[str, Sequence[str], None] = None,
                 settings: Optional[GenerationSettings] = None, **kwargs: Any) -> Union[list[Image.Image], torch.Tensor]:
        """Text to image: one image per prompt, times num_images (64 px, or 32 px with superres=False).

        output_type "ids" returns the final token ids instead, long (B, h, w), without decoding a pixel."""
        self._check_output_type(output_type)
        if output_type == "ids":  # the stage runner alone: not a pixel decoded
            r = self._request(prompt, negative_prompt, settings, **kwargs)
            state = None
            for _, state in self._token_states(r, self._text_to_image(r)):
                pass
            return state.ids
        return self._output(self.stream(prompt, negative_prompt=negative_prompt, previews=False, settings=settings,
                                        **kwargs), output_type)

    @torch.inference_mode()
    def stream_inpaint(self, image: ImageLike, mask: ImageLike, prompt: Union[str, Sequence[str]], *,
                       negative_prompt: Union[str, Sequence[str], None] = None, previews: bool = True,
                       settings: Optional[GenerationSettings] = None, **kwargs: Any) -> Iterator[DecodeStep]:
        """Regenerate the white part of `mask` in `image`, base stage then super-res, known tokens fixed."""
        r = self._request(prompt, negative_prompt, settings, **kwargs)
        image, mask = as_pil(image, "image"), as_mask(mask)
        if mask.size != image.size:
            raise ImageError(f"the mask is {mask.width}x{mask.height} pixels but the image is "
                             f"{image.width}x{image.height}; give a mask of the image's size")
        rgb = to_rgb(image)
        names, summary = self.stage_names(r.settings.superres), self.summary
        originals = {n: pil_to_tensor([square(rgb, summary.image_size(n))]).to(self.device) for n in names}
        regions = {n: mask_to_grid(mask, summary.image_size(n) // self.renderer.factor).to(self.device) for n in names}
        if not bool(regions["base"].any()):
            raise ImageError("the mask is empty: paint (in white) the part of the image to regenerate "
                             "(uint8 masks: 255 = regenerate; bool and other integer masks: non-zero)")
        # Nothing under the mask may reach the fill: the region's pixels are blanked before encoding
        # (the encoder's receptive field would otherwise carry them into neighbouring known tokens),
        # masked positions enter the network as mask tokens, and super-res is conditioned on the
        # base stage's new low-res tokens.
        plans = [self._plan(n, r.batch, self.vq.encode(self.renderer.blank(originals[n], regions[n])).expand(r.batch, -1, -1),
                            regions[n].expand(r.batch, -1, -1)) for n in names]
        for step in self._steps(r, plans, previews):
            if step.canvas is not None:  # outside the region, show and return the original pixels exactly
                step = dataclasses.replace(step, canvas=self.renderer.paste(step.canvas, originals[step.stage],
                                                                            regions[step.stage]))
            yield step

    @torch.inference_mode()
    def inpaint(self, image: ImageLike, mask: ImageLike, prompt: Union[str, Sequence[str]], *,
                output_type: str = "pil", settings: Optional[GenerationSettings] = None,
                **kwargs: Any) -> Union[list[Image.Image], torch.Tensor]:
        self._check_output_type(output_type)
        return self._output(self.stream_inpaint(image, mask, prompt, previews=False, settings=settings, **kwargs),
                            output_type)

    @torch.inference_mode()
    def stream_superres(self, low_res_image: ImageLike, prompt: Union[str, Sequence[str]], *,
                        negative_prompt: Union[str, Sequence[str], None] = None, previews: bool = True,
                        settings: Optional[GenerationSettings] = None, **kwargs: Any) -> Iterator[DecodeStep]:
        """Super-res stage alone, conditioned on an image (resized to the base size) and a prompt; the
        `superres` setting is not read."""
        if self.superres_model is None:
            raise ValueError("this pipeline has no super-res stage")
        r = self._request(prompt, negative_prompt, settings, **kwargs)
        small = pil_to_tensor([square(to_rgb(low_res_image), self.config.base_size)]).to(self.device)
        cond_ids = self.vq.encode(small).expand(r.batch, -1, -1)
        yield from self._steps(r, [self._plan("superres", r.batch)], previews, cond_ids=cond_ids,
                               low_res=small.expand(r.batch, -1, -1, -1))

    @torch.inference_mode()
    def superres(self, low_res_image: ImageLike, prompt: Union[str, Sequence[str]], *, output_type: str = "pil",
                 settings: Optional[GenerationSettings] = None, **kwargs: Any) -> Union[list[Image.Image], torch.Tensor]:
        self._check_output_type(output_type)
        return self._output(self.stream_superres(low_res_image, prompt, previews=False, settings=settings, **kwargs),
                            output_type)


def load_pipeline(source: Optional[PathLike] = None, device: Union[str, torch.device, None] = None,
                  revision: Optional[str] = None, dtype: Union[str, torch.dtype, None] = "auto") -> MusePipeline:
    """The shipped model (None), a local folder, or a Hub repo id; aMUSEd weights (a diffusers-layout
    folder, or amused/...) load as a `muse.amused.AmusedPipeline` (needs the [amused] extra)."""
    from .amused.load import is_amused_source

    if is_amused_source(source):
        from .amused.pipeline import load_amused

        return load_amused(source, device=device, revision=revision, dtype=dtype)
    return MusePipeline.from_pretrained(source, device=device, revision=revision, dtype=dtype)
