"""Training captions from emoji meta records (see `muse.data.emoji`)."""

from __future__ import annotations

import random

# Evaluation prompts with the exact name, so the model must see it alone often.
EXACT_NAME_PROBABILITY = 0.3
TEMPLATES = (
    "{s}",
    "an emoji of {s}",
    "{s} emoji",
    "{s}, {style} style",
    "a {style} emoji of {s}",
    "{s}, {subcategory}",
)
STYLES = {"noto": "noto", "twemoji": "twemoji"}


def _with_tone(text: str, record: dict) -> str:
    tone = record.get("skin_tone")
    return f"{text}, {tone}" if tone else text


def subjects(record: dict) -> list[str]:
    """The name and each distinct short name, each with the skin tone appended when present."""
    names = dict.fromkeys([record["name"], *record.get("short_names", [])])  # ordered, no repeats
    return [_with_tone(name, record) for name in names if name]


def exact_name(record: dict) -> str:
    """The evaluation prompt: lowercased name, plus skin tone when present."""
    return _with_tone(record["name"], record)


def sample_caption(record: dict, rng: random.Random) -> str:
    """One random training caption for `record`; deterministic given `rng`'s state."""
    if rng.random() < EXACT_NAME_PROBABILITY:
        return exact_name(record)
    subject = rng.choice(subjects(record))
    templates = [t for t in TEMPLATES if record.get("subcategory") or "{subcategory}" not in t]
    if record.get("set") not in STYLES:
        templates = [t for t in templates if "{style}" not in t]
    return rng.choice(templates).format(
        s=subject, style=STYLES.get(record.get("set"), ""), subcategory=record.get("subcategory", "")
    )
