"""What a pipeline streams: a `DecodeStep` per decoding step of each stage, the sampler's `DecodeState`
placed in its request (stage, region, seed) with the step's pictures."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
from PIL import Image

from .sampling import DecodeState


def _from_state(name: str, doc: str) -> property:
    """A read-only DecodeStep attribute that is its DecodeState's."""
    return property(lambda step: getattr(step.state, name), doc=doc)


@dataclass
class DecodeStep:
    """One decoding step of one stage. Grids are (B, h, w); images are PIL, one per row."""

    state: DecodeState  # the sampler's state after this step, grids (B, h, w)
    stage: str  # "base" or "superres"
    stage_index: int  # 0-based among this request's stages
    num_stages: int
    region: torch.Tensor  # bool; positions this stage generates (all, except when inpainting)
    seed: int
    # current image, still-masked tokens greyed; at a stage's last step, the full decoder's image
    canvas: Optional[list[Image.Image]] = None
    prediction: Optional[list[Image.Image]] = None  # still-masked tokens filled with the model's guess
    is_final: bool = False  # the last step of the last stage: canvas holds the result

    step = _from_state("step", "1-based index of the step")
    total = _from_state("total", "steps in this stage")
    ids = _from_state("ids", "long; mask_id where still masked")
    pred_ids = _from_state("pred_ids", "long; the model's full prediction")
    masked = _from_state("masked", "bool; still masked after this step")
    revealed = _from_state("revealed", "bool; fixed at this step")
    scores = _from_state("scores", "float; keep scores the sampler used (higher = kept)")
    # The parts of the keep score (see `muse.sampling.DecodeState`), NaN where the sampler did not choose.
    log_probs = _from_state("log_probs", "float; the model's log-probability of its sampled token")
    critic_scores = _from_state("critic_scores", "float; the critic's 'token is wrong' logit; None: no critic pass")
    keep_noise = _from_state("keep_noise", "float; the random term the sampler added to the keep score")
    ranking = _from_state("ranking", "what ranked the tokens: confidence, critic, halton or random")

    @property
    def num_tokens(self) -> int:
        return int(self.region[0].sum())

    @property
    def num_fixed(self) -> int:
        return int((self.region[0] & ~self.masked[0]).sum())

    @property
    def label(self) -> str:
        return f"{self.stage} {self.step}/{self.total} · {self.num_fixed} of {self.num_tokens} tokens fixed"
