"""The caption bank: a fixed set of encoded captions per image, shared by every transformer stage of a run.

Encoding captions is the text encoder's forward pass, which on a CPU costs as much as a training
step; drawing each step's captions from a bank encoded once (sorted by length, so batches carry
little padding) removes that cost from every stage.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from ..data import CaptionedImages
from ..data.captions import DEFAULT_RECIPE, HELD_OUT, exact_name
from ..text import TextEncoder

# captions drawn per image, the exact name first: with the rest drawn by the recipe, the exact name is
# 49 % of what an image draws under either recipe (the `prompts` recipe has ~60 captions to draw from)
CAPTIONS_PER_IMAGE = {"names": 6, "prompts": 12}
ENCODE_BATCH = 256


@dataclass(eq=False)  # tensors: compare fields explicitly
class CaptionBank:
    """Unique captions' token embeddings back to back, and which of them each image may draw."""

    embeds: torch.Tensor  # (T, D) fp16: every unique caption's unmasked token embeddings, concatenated
    offsets: torch.Tensor  # (U + 1,) long: caption j is embeds[offsets[j]:offsets[j + 1]]
    choices: torch.Tensor  # (N, K) long: the K caption ids of each image
    recipe: str = "names"  # how the captions were drawn (`muse.data.captions`); banks saved before recipes: names

    @classmethod
    def build(cls, data: CaptionedImages, encoder: TextEncoder, per_image: int, seed: int,
              recipe: str = DEFAULT_RECIPE) -> CaptionBank:
        """`per_image` captions per image drawn with `seed`; an image with a name gets its exact name
        first, since that is the prompt the evaluation uses."""
        rng = random.Random(seed)
        rows = []
        for i, record in enumerate(data.records):
            caps = [exact_name(record)] if "name" in record and exact_name(record) not in HELD_OUT else []
            caps += [data.caption(i, rng, recipe) for _ in range(per_image - len(caps))]
            rows.append(caps)
        unique = sorted({c for row in rows for c in row}, key=lambda c: (len(c), c))
        index = {c: j for j, c in enumerate(unique)}
        pieces: list[torch.Tensor] = []
        for start in tqdm(range(0, len(unique), ENCODE_BATCH), desc="encoding captions", mininterval=5):
            embeds, mask = encoder(unique[start:start + ENCODE_BATCH])
            pieces += [e[m].to(torch.float16).cpu() for e, m in zip(embeds, mask)]
        # An empty caption keeps one zero row, so every caption has at least one position to attend to.
        lengths = torch.tensor([max(1, p.shape[0]) for p in pieces])
        pieces = [p if p.shape[0] else torch.zeros(1, encoder.dim, dtype=torch.float16) for p in pieces]
        offsets = torch.cat((torch.zeros(1, dtype=torch.long), lengths.cumsum(0)))
        choices = torch.tensor([[index[c] for c in row] for row in rows])
        return cls(torch.cat(pieces), offsets, choices, recipe)

    @classmethod
    def load(cls, path: Path) -> CaptionBank:
        from safetensors import safe_open

        with safe_open(str(path), "pt") as handle:
            recipe = (handle.metadata() or {}).get("recipe", "names")
        t = load_file(str(path))
        return cls(t["embeds"], t["offsets"], t["choices"], recipe)

    def save(self, path: Path) -> None:
        save_file({"embeds": self.embeds, "offsets": self.offsets, "choices": self.choices}, str(path),
                  metadata={"recipe": self.recipe})

    @classmethod
    def load_or_build(cls, path: Path, data: CaptionedImages, encoder: Callable[[], TextEncoder], seed: int,
                      recipe: str = DEFAULT_RECIPE, per_image: int | None = None) -> CaptionBank:
        """The bank saved at `path` when it was drawn by `recipe`, else one built and saved there (a run
        can change recipe between resumes). `encoder` makes the text encoder; it is called only to
        build, so a stage that finds its bank never loads one."""
        if path.is_file():
            bank = cls.load(path)
            if bank.recipe == recipe:
                return bank
        bank = cls.build(data, encoder(), per_image or CAPTIONS_PER_IMAGE[recipe], seed, recipe)
        bank.save(path)
        return bank

    def __call__(self, image_indices: torch.Tensor, generator: torch.Generator,
                 device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """One random caption per image: (B, L, D) float embeddings and (B, L) mask."""
        pick = torch.randint(0, self.choices.shape[1], (len(image_indices),), generator=generator)
        ids = self.choices[image_indices, pick]
        starts, ends = self.offsets[ids], self.offsets[ids + 1]
        longest = int((ends - starts).max())
        embeds = torch.zeros(len(ids), longest, self.embeds.shape[1])
        mask = torch.zeros(len(ids), longest, dtype=torch.bool)
        for row, (a, b) in enumerate(zip(starts.tolist(), ends.tolist())):
            embeds[row, : b - a] = self.embeds[a:b].float()
            mask[row, : b - a] = True
        return embeds.to(device), mask.to(device)
