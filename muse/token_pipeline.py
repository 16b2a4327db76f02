"""What every model family's pipeline shares: a request checked once, stage plans decoded by the stage
runner (`muse.runner`), and a `DecodeStep` streamed for every step with its pictures (`muse.render`).

`TokenPipeline` holds the public API (`stream`, `__call__`, `stream_inpaint`, `inpaint`, `stream_superres`,
`superres`) and the settings (`muse.settings`); a family says how a request becomes stage plans and token
states: MUSE's `muse.pipeline.MusePipeline`, aMUSEd's `muse.amused.AmusedPipeline`.
"""

from __future__ import annotations

import dataclasses
import secrets
from pathlib import Path
from typing import Any, Iterator, Optional, Union

import torch
from PIL import Image

from .compiled import compile_forward
from .hub import PathLike, push_folder_to_hub
from .images import ImageError, ImageLike, as_mask, as_pil, pil_to_tensor, square, tensor_to_pil, to_rgb
from .loader import PipelineConfig, PipelineSummary
from .orders import resolve_order
from .render import Renderer
from .request import GenerationRequest, Prompts, given_or_checked, negative_list, prompt_list
from .runner import StagePlan
from .sampling import DecodeState
from .settings import MAX_IMAGES, ORDERS, SCHEMA, GenerationSettings, known_settings
from .steps import DecodeStep

OUTPUT_TYPES = ("pil", "ids")
Output = Union[list[Image.Image], torch.Tensor]  # images ("pil") or token ids (B, h, w) ("ids")


class TokenPipeline:
    """A text-to-image pipeline over token grids: the API both model families share.

    A family hands `__init__` its config, tokenizer (`vq`: ids <-> images) and preview decoder, sets its
    stage networks (`base_model`; `superres_model` and the critics, or None) and implements `to`,
    `save_pretrained`, `uses_critic`, `_plan`, `_token_states` and `_inpaint_plans`."""

    config: PipelineConfig
    renderer: Renderer
    text_encoder: Any  # the family's own (MUSE's TextEncoder, aMUSEd's CLIP); both say `truncates(text)`, `max_length`
    base_model: torch.nn.Module
    superres_model: Optional[torch.nn.Module] = None
    base_critic: Optional[torch.nn.Module] = None
    superres_critic: Optional[torch.nn.Module] = None

    def __init__(self, config: PipelineConfig, vq: Any, preview: Any = None):
        self.config, self.vq = config, vq
        self.renderer = Renderer(vq, preview.eval() if preview is not None else None)

    # ----- the family's part ----------------------------------------------------------------

    def to(self, device: Union[str, torch.device], dtype: Optional[torch.dtype] = None) -> "TokenPipeline":
        raise NotImplementedError

    def save_pretrained(self, folder: PathLike) -> Path:
        raise NotImplementedError

    def uses_critic(self, use_critic: bool = True) -> bool:
        """Whether `use_critic` puts a critic in charge of the keep choice (else the model's confidence)."""
        raise NotImplementedError

    def _plan(self, name: str, batch: int, known: Optional[torch.Tensor] = None,
              region: Optional[torch.Tensor] = None) -> StagePlan:
        """A stage over the whole grid unless `known` ids and a `region` (both (B, h, w)) are given."""
        raise NotImplementedError

    def _token_states(self, r: GenerationRequest, plans: list[StagePlan],
                      cond_ids: Optional[torch.Tensor] = None) -> Iterator[tuple[int, DecodeState]]:
        """(stage index, state with (B, h, w) grids) for every step of every planned stage."""
        raise NotImplementedError

    def _inpaint_plans(self, r: GenerationRequest, rgb: Image.Image, mask: Image.Image
                       ) -> tuple[list[StagePlan], dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """Inpainting's stage plans, and by stage name the original image (1, 3, H, W) and the region
        (bool (h, w) or (1, h, w)) whose pixels the result takes from the generated image."""
        raise NotImplementedError

    # ----- construction and I/O -----------------------------------------------------------

    @property
    def device(self) -> torch.device:
        return next(self.base_model.parameters()).device

    @property
    def preview_decoder(self) -> Any:
        return self.renderer.preview_decoder

    @property
    def fast_previews(self) -> bool:
        """Step previews through the preview decoder (when there is one); False: the full decoder."""
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

    def compile(self, backend: Any = "inductor", mode: Optional[str] = None) -> "TokenPipeline":
        """Run the transformers through `torch.compile` (see `muse.compiled`): meant for a GPU; on a CPU
        it was measured not to pay. The first request compiles (70 s for the shipped pipeline on a
        2-core CPU); a compilation failure falls back to eager with a warning."""
        for model in (self.base_model, self.superres_model, self.base_critic, self.superres_critic):
            if model is not None:
                compile_forward(model, backend=backend, mode=mode)
        return self

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

    def checked_settings(self, settings: Optional[GenerationSettings], values: dict[str, Any]) -> GenerationSettings:
        """A request's settings: `settings` as given (checked when `settings(...)` made it), else the
        keyword `values` checked now; both at once is an error."""
        return given_or_checked(settings, values, "settings", GenerationSettings, self.settings)

    def ranking(self, settings: GenerationSettings) -> str:
        """What ranks the tokens of a request with these settings (one of `muse.settings.ORDERS`): its
        `order`, with `use_critic` read as `muse.orders.resolve_order` says."""
        return resolve_order(settings.order, settings.use_critic, self.uses_critic(True))

    def check_order(self, settings: GenerationSettings) -> None:
        """Refuse an order this model cannot decode by: the critic's, without a critic."""
        if settings.order == "critic" and not self.uses_critic(True):
            others = ", ".join(o for o in ORDERS if o != "critic")
            raise ValueError(f"order='critic' needs a token critic and this model has none; choose {others}")

    @property
    def summary(self) -> PipelineSummary:
        """Sizes and stages, as `muse.load.describe` reads them from a folder."""
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

    # ----- running a request ----------------------------------------------------------------

    def _request(self, prompt: Prompts, negative_prompt: Optional[Prompts],
                 settings: Optional[GenerationSettings] = None, **kwargs: Any) -> GenerationRequest:
        prompts, s = prompt_list(prompt), self.checked_settings(settings, kwargs)
        self.check_order(s)
        if len(prompts) * s.num_images > MAX_IMAGES:
            raise ValueError(f"at most {MAX_IMAGES} images per request (prompts x num_images), "
                             f"got {len(prompts) * s.num_images}")
        negatives = negative_list(negative_prompt, len(prompts))
        seed = secrets.randbits(31) if s.seed is None else s.seed
        return GenerationRequest(prompts, negatives, s, torch.Generator(device=self.device).manual_seed(seed), seed)

    def _text_to_image(self, r: GenerationRequest) -> list[StagePlan]:
        return [self._plan(name, r.batch) for name in self.stage_names(r.settings.superres)]

    def _steps(self, r: GenerationRequest, plans: list[StagePlan], previews: bool,
               cond_ids: Optional[torch.Tensor] = None, low_res: Optional[torch.Tensor] = None) -> Iterator[DecodeStep]:
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
            yield DecodeStep(state, stage=plans[index].name, stage_index=index, num_stages=len(plans),
                             region=plans[index].region, seed=r.seed, canvas=canvas, prediction=prediction,
                             is_final=final)

    @staticmethod
    def _output(steps: Iterator[DecodeStep], output_type: str) -> Output:
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
    def stream(self, prompt: Prompts, *, negative_prompt: Optional[Prompts] = None, previews: bool = True,
               settings: Optional[GenerationSettings] = None, **kwargs: Any) -> Iterator[DecodeStep]:
        """Text to image, one DecodeStep per step of each stage; the last has is_final and the images.

        The settings are keywords (`GenerationSettings`' fields), or `settings`: one made by `settings(...)`,
        used as it is."""
        r = self._request(prompt, negative_prompt, settings, **kwargs)
        yield from self._steps(r, self._text_to_image(r), previews)

    @torch.inference_mode()
    def __call__(self, prompt: Prompts, *, output_type: str = "pil", negative_prompt: Optional[Prompts] = None,
                 settings: Optional[GenerationSettings] = None, **kwargs: Any) -> Output:
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
    def stream_inpaint(self, image: ImageLike, mask: ImageLike, prompt: Prompts, *,
                       negative_prompt: Optional[Prompts] = None, previews: bool = True,
                       settings: Optional[GenerationSettings] = None, **kwargs: Any) -> Iterator[DecodeStep]:
        """Regenerate the white part of `mask` in `image`, known tokens fixed; outside the region the
        original pixels are shown and returned."""
        r = self._request(prompt, negative_prompt, settings, **kwargs)
        image, mask = as_pil(image, "image"), as_mask(mask)
        if mask.size != image.size:
            raise ImageError(f"the mask is {mask.width}x{mask.height} pixels but the image is "
                             f"{image.width}x{image.height}; give a mask of the image's size")
        plans, originals, regions = self._inpaint_plans(r, to_rgb(image), mask)
        for step in self._steps(r, plans, previews):
            if step.canvas is not None:
                step = dataclasses.replace(step, canvas=self.renderer.paste(step.canvas, originals[step.stage],
                                                                            regions[step.stage]))
            yield step

    @torch.inference_mode()
    def inpaint(self, image: ImageLike, mask: ImageLike, prompt: Prompts, *, output_type: str = "pil",
                settings: Optional[GenerationSettings] = None, **kwargs: Any) -> Output:
        self._check_output_type(output_type)
        return self._output(self.stream_inpaint(image, mask, prompt, previews=False, settings=settings, **kwargs),
                            output_type)

    @torch.inference_mode()
    def stream_superres(self, low_res_image: ImageLike, prompt: Prompts, *, negative_prompt: Optional[Prompts] = None,
                        previews: bool = True, settings: Optional[GenerationSettings] = None,
                        **kwargs: Any) -> Iterator[DecodeStep]:
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
    def superres(self, low_res_image: ImageLike, prompt: Prompts, *, output_type: str = "pil",
                 settings: Optional[GenerationSettings] = None, **kwargs: Any) -> Output:
        self._check_output_type(output_type)
        return self._output(self.stream_superres(low_res_image, prompt, previews=False, settings=settings, **kwargs),
                            output_type)
