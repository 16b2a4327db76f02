"""Training captions from emoji meta records (see `muse.data.emoji`), by one of two recipes.

- `names`: the name or a short name, alone or in six templates (`TEMPLATES`).
- `prompts` (the default): captions that read like what people type. The exact name keeps its share;
  CLDR's short name ("sun" for "black sun with rays") is a second name; templates put an article in
  front ("a rocket"); the drawing's colour and the words people use for the emoji (CLDR, emojibase,
  emojilib) appear as they would in a prompt ("a yellow sun", "rocket, space and launch").

Each recipe is an explicit distribution over captions (`caption_distribution`), so the share of the
exact name and the set of every caption a record can give are known, not estimated.
"""

from __future__ import annotations

import itertools
import random

from .paraphrases import PARAPHRASES

# The evaluation's held-out prompts are never training captions: a recipe that would make one (CLDR's
# "thumbs up" in "a {s}" gives "a thumbs up") has it taken out of its distribution.
HELD_OUT = frozenset(text for text, _ in PARAPHRASES)

RECIPES = ("names", "prompts")
DEFAULT_RECIPE = "prompts"

# names: evaluation prompts with the exact name, so the model must see it alone often.
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

# prompts: the exact name alone takes EXACT_SHARE; the rest is split among these groups.
EXACT_SHARE = 0.45
GROUP_SHARES = {"second_name": 0.10, "templates": 0.25, "colour": 0.07, "keywords": 0.13}
PROMPT_TEMPLATES = (
    "{a} {s}",
    "an emoji of {s}",
    "{s} emoji",
    "{s}, {style} style",
    "a {style} emoji of {s}",
    "{s}, {subcategory}",
)
COLOUR_TEMPLATES = ("a {c} {s}", "{s}, {c}")
KEYWORD_TEMPLATES = ("{s}, {k}",)
PAIR_TEMPLATE = "{s}, {k} and {j}"
# which of an emoji's names a template's subject is: the exact name, CLDR's short name, the short names
SUBJECT_SHARES = {"name": 0.4, "cldr": 0.4, "short": 0.2}


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


def second_name(record: dict) -> str | None:
    """CLDR's short name when it differs from the exact name (no skin tone appended)."""
    cldr = record.get("cldr_name")
    return cldr if cldr and cldr != record["name"] else None


def article(text: str) -> str:
    return "an" if text[:1] in "aeiou" else "a"


def _subject_weights(record: dict) -> dict[str, float]:
    """Each name a template may use -> its probability (before the tone is appended)."""
    shorts = [n for n in record.get("short_names", []) if n and n not in (record["name"], second_name(record))]
    groups = {"name": [record["name"]], "cldr": [second_name(record)] if second_name(record) else [],
              "short": list(dict.fromkeys(shorts))}
    total = sum(SUBJECT_SHARES[g] for g, names in groups.items() if names)
    weights: dict[str, float] = {}
    for group, names in groups.items():
        for name in names:
            weights[name] = weights.get(name, 0.0) + SUBJECT_SHARES[group] / total / len(names)
    return weights


def _templates(record: dict, templates: tuple[str, ...]) -> list[str]:
    out = [t for t in templates if record.get("subcategory") or "{subcategory}" not in t]
    return out if record.get("set") in STYLES else [t for t in out if "{style}" not in t]


def _prompt_distribution(record: dict) -> dict[str, float]:
    out: dict[str, float] = {}

    def add(text: str, weight: float) -> None:
        text = _with_tone(text, record)
        out[text] = out.get(text, 0.0) + weight

    subjects_w = _subject_weights(record)
    keywords = record.get("keywords") or []
    colour = record.get("colour")
    shares = dict(GROUP_SHARES)
    # a group the record has nothing for gives its share to the plain templates
    for group, present in (("second_name", second_name(record)), ("colour", colour), ("keywords", keywords)):
        if not present:
            shares["templates"] += shares.pop(group)
    add(record["name"], EXACT_SHARE)
    if "second_name" in shares:
        add(second_name(record), shares["second_name"])
    fields = {"style": STYLES.get(record.get("set"), ""), "subcategory": record.get("subcategory", "")}
    templates = _templates(record, PROMPT_TEMPLATES)
    for (s, ws), t in itertools.product(subjects_w.items(), templates):
        add(t.format(s=s, a=article(s), **fields), shares["templates"] * ws / len(templates))
    if "colour" in shares:
        for (s, ws), t in itertools.product(subjects_w.items(), COLOUR_TEMPLATES):
            add(t.format(s=s, c=colour), shares["colour"] * ws / len(COLOUR_TEMPLATES))
    if "keywords" in shares:
        pairs = list(itertools.combinations(keywords, 2))
        options = [(t, k, "") for t in KEYWORD_TEMPLATES for k in keywords] + [(PAIR_TEMPLATE, k, j) for k, j in pairs]
        for (s, ws), (t, k, j) in itertools.product(subjects_w.items(), options):
            add(t.format(s=s, k=k, j=j), shares["keywords"] * ws / len(options))
    return out


def _names_distribution(record: dict) -> dict[str, float]:
    out: dict[str, float] = {exact_name(record): EXACT_NAME_PROBABILITY}
    names = subjects(record)
    templates = _templates(record, TEMPLATES)
    fields = {"style": STYLES.get(record.get("set"), ""), "subcategory": record.get("subcategory", "")}
    for s, t in itertools.product(names, templates):
        text = t.format(s=s, **fields)
        out[text] = out.get(text, 0.0) + (1 - EXACT_NAME_PROBABILITY) / len(names) / len(templates)
    return out


def caption_distribution(record: dict, recipe: str = DEFAULT_RECIPE) -> dict[str, float]:
    """Every caption `record` can give under `recipe` -> its probability (they sum to 1); never a
    held-out paraphrase (`HELD_OUT`)."""
    if recipe not in RECIPES:
        raise ValueError(f"unknown caption recipe {recipe!r}; choose one of {', '.join(RECIPES)}")
    dist = _prompt_distribution(record) if recipe == "prompts" else _names_distribution(record)
    kept = {text: w for text, w in dist.items() if text not in HELD_OUT}
    total = sum(kept.values())
    return {text: w / total for text, w in kept.items()}


def sample_caption(record: dict, rng: random.Random, recipe: str = DEFAULT_RECIPE) -> str:
    """One random training caption for `record`; deterministic given `rng`'s state."""
    if recipe == "names" and not HELD_OUT & set(_names_distribution(record)):
        # drawn as it always was, so a bank of this recipe rebuilds the same
        if rng.random() < EXACT_NAME_PROBABILITY:
            return exact_name(record)
        subject = rng.choice(subjects(record))
        templates = _templates(record, TEMPLATES)
        return rng.choice(templates).format(
            s=subject, style=STYLES.get(record.get("set"), ""), subcategory=record.get("subcategory", ""))
    dist = caption_distribution(record, recipe)
    return rng.choices(list(dist), weights=list(dist.values()))[0]


def template_words() -> set[str]:
    """Every word the templates of all recipes add to a caption (the device pack keeps their tokens)."""
    text = " ".join((*TEMPLATES, *PROMPT_TEMPLATES, *COLOUR_TEMPLATES, *KEYWORD_TEMPLATES, PAIR_TEMPLATE, "a an"))
    return set(text.replace("{", " ").replace("}", " ").replace(",", " ").split()) | set(STYLES.values())
