"""The prompt sets the evaluation scores, each on its own row, so that no set flatters another:

- `names`: exact names of base-form emoji (no skin tone): what people type first;
- `skin tones`: exact names with a skin tone;
- `cldr`: CLDR's short names that differ from every name the dataset gives the emoji ("sun" for "black
  sun with rays"; `muse.data.emoji_words`);
- `paraphrases`: the held-out phrasings of `muse.data.paraphrases`, never training captions.

Each is a list of (target emoji key, prompt), fixed by a seed; a prompt is asked once.
"""

from __future__ import annotations

import random
from typing import Optional

from ..data import CaptionedImages
from ..data.captions import exact_name, second_name
from ..data.paraphrases import PARAPHRASES

ROWS = ("names", "skin tones", "cldr", "paraphrases")


def _sample(pairs: dict[str, str], count: Optional[int], seed: int) -> list[tuple[str, str]]:
    """prompt -> key, as (key, prompt) pairs: all of them in prompt order, or `count` drawn with `seed`."""
    prompts = sorted(pairs)
    if count is not None and count < len(prompts):
        prompts = random.Random(seed).sample(prompts, count)
    return [(pairs[p], p) for p in prompts]


def name_prompts(data: CaptionedImages, count: Optional[int] = None, seed: int = 0) -> list[tuple[str, str]]:
    """(key, exact name) of base-form emoji with distinct names: all, or `count` fixed by `seed`."""
    pairs: dict[str, str] = {}
    for record in data.records:
        if "name" in record and not record.get("skin_tone"):
            pairs.setdefault(exact_name(record), record["key"])
    return _sample(pairs, count, seed)


def skin_tone_prompts(data: CaptionedImages, count: Optional[int] = None, seed: int = 0) -> list[tuple[str, str]]:
    """(key, exact name with its skin tone) of toned variants: all, or `count` fixed by `seed`."""
    pairs: dict[str, str] = {}
    for record in data.records:
        if "name" in record and record.get("skin_tone"):
            pairs.setdefault(exact_name(record), record["key"])
    return _sample(pairs, count, seed)


def cldr_prompts(data: CaptionedImages, count: Optional[int] = None, seed: int = 0) -> list[tuple[str, str]]:
    """(key, CLDR short name) of base-form emoji whose CLDR name is none of the dataset's names for it."""
    pairs: dict[str, str] = {}
    for record in data.records:
        cldr = second_name(record) if "name" in record and not record.get("skin_tone") else None
        if cldr and cldr not in record.get("short_names", []):
            pairs.setdefault(cldr, record["key"])
    return _sample(pairs, count, seed)


def paraphrase_prompts(data: CaptionedImages) -> list[tuple[str, str]]:
    """(key, paraphrase) for every held-out paraphrase whose emoji is in `data` (the toneless variant)."""
    keys = {r["name"]: r["key"] for r in data.records if not r.get("skin_tone") and "name" in r}
    return [(keys[name], text) for text, name in PARAPHRASES if name in keys]


def prompt_rows(data: CaptionedImages, names: Optional[int] = 1000, tones: Optional[int] = 200,
                cldr: Optional[int] = 300, seed: int = 0) -> dict[str, list[tuple[str, str]]]:
    """Every row that `data` has prompts for (a folder of your own images has none), by name."""
    rows = {"names": name_prompts(data, names, seed), "skin tones": skin_tone_prompts(data, tones, seed),
            "cldr": cldr_prompts(data, cldr, seed), "paraphrases": paraphrase_prompts(data)}
    return {name: prompts for name, prompts in rows.items() if prompts}


__all__ = ["ROWS", "name_prompts", "skin_tone_prompts", "cldr_prompts", "paraphrase_prompts", "prompt_rows"]
