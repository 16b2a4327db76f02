"""A generation request: its prompts, its settings checked once, its seeded generator; and the checks of
what a request is handed (prompts, negative prompts, an inpainting region)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Optional, Sequence, TypeVar, Union

import torch

from .images import ImageError
from .settings import GenerationSettings

Prompts = Union[str, Sequence[str]]
T = TypeVar("T")
EMPTY_MASK = ("the mask is empty: paint (in white) the part of the image to regenerate "
              "(uint8 masks: 255 = regenerate; bool and other integer masks: non-zero)")


def prompt_list(prompt: Prompts, what: str = "prompt") -> list[str]:
    """A prompt or a non-empty list of them, as a list."""
    if isinstance(prompt, str):
        return [prompt]
    if isinstance(prompt, (list, tuple)) and prompt and all(isinstance(p, str) for p in prompt):
        return list(prompt)
    raise TypeError(f"{what} must be a string or a non-empty list of strings")


def negative_list(negative_prompt: Optional[Prompts], count: int) -> Optional[list[str]]:
    """One negative prompt per prompt (a single one is shared), or None."""
    if negative_prompt is None:
        return None
    negatives = prompt_list(negative_prompt, "negative_prompt")
    if len(negatives) == 1:
        negatives = negatives * count
    if len(negatives) != count:
        raise ValueError(f"got {len(negatives)} negative prompts for {count} prompts")
    return negatives


def check_region(region: torch.Tensor) -> None:
    """An ImageError unless an inpainting region (bool) holds a token."""
    if not bool(region.any()):
        raise ImageError(EMPTY_MASK)


@dataclass
class GenerationRequest:
    """A checked request: its prompts, settings, batch size and seeded generator."""

    prompts: list[str]
    negatives: Optional[list[str]]
    settings: GenerationSettings
    generator: torch.Generator
    seed: int
    options: Any = None  # the family's own checked options (aMUSEd's `AmusedOptions`); MUSE has none

    @property
    def batch(self) -> int:
        return len(self.prompts) * self.settings.num_images


def given_or_checked(given: Optional[T], values: dict[str, Any], keyword: str, kind: type,
                     check: Callable[..., T]) -> T:
    """A request's `keyword` (its settings, or a family's options): `given` as it is, checked when
    `check` made it, else the keyword `values` checked by `check` now; both at once is a TypeError."""
    if given is None:
        return check(**values)
    if not isinstance(given, kind):
        raise TypeError(f"{keyword}= takes the {kind.__name__} that pipe.{keyword}(...) makes, "
                        f"got {type(given).__name__}")
    if values:
        raise TypeError(f"give the {keyword} either as {keyword}= or as keywords, not both; "
                        f"got {keyword}= and {sorted(values)}")
    return given
