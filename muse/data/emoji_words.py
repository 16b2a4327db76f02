"""The words people use for each emoji, joined to the dataset on the code point.

Sources (npm packages, fetched once into the cache like the images):
- CLDR annotations (`cldr-annotations-full`, `cldr-annotations-derived-full`; Unicode licence): the
  short name CLDR gives text-to-speech (`tts`, e.g. "sun" where Unicode says "black sun with rays"),
  and keywords;
- emojibase-data (MIT): the label and tags;
- emojilib (MIT): keywords.

Each record gains `cldr_name` (CLDR's short name of the base emoji, or the emojibase label) and
`keywords` (up to `MAX_KEYWORDS` words or two-word phrases, in source order, none of them a word of a
name already). A skin-tone variant takes its base emoji's words; its tone stays in `skin_tone`.
"""

from __future__ import annotations

import json
import re
import tarfile
from collections.abc import Callable
from pathlib import Path

# source -> (npm package, version, file inside the package)
PACKAGES = {
    "cldr": ("cldr-annotations-full", "48.2.0", "package/annotations/en/annotations.json"),
    "cldr_derived": ("cldr-annotations-derived-full", "48.2.0", "package/annotationsDerived/en/annotations.json"),
    "emojibase": ("emojibase-data", "17.0.0", "package/en/data.json"),
    "emojilib": ("emojilib", "4.0.3", "package/dist/emoji-en-US.json"),
}
LICENCES = {"cldr": "Unicode-3.0", "cldr_derived": "Unicode-3.0", "emojibase": "MIT", "emojilib": "MIT"}
MAX_KEYWORDS = 8
VARIATION_SELECTOR = "fe0f"
TONES = {"1f3fb", "1f3fc", "1f3fd", "1f3fe", "1f3ff"}
_WORDS = re.compile(r"^[a-z][a-z' -]*[a-z]$")


def code_key(code: str) -> str:
    """'2600-FE0F' or '☀️' -> '2600': lowercase hex code points joined by '-', without variation
    selectors, the form every source is joined on."""
    if not re.fullmatch(r"[0-9a-fA-F]+(-[0-9a-fA-F]+)*", code):
        code = "-".join(f"{ord(c):x}" for c in code)
    return "-".join(p for p in code.lower().split("-") if p != VARIATION_SELECTOR)


def base_key(key: str) -> str:
    """A skin-tone variant's key -> its base emoji's key ('1f44d-1f3fb' -> '1f44d')."""
    return "-".join(p for p in key.split("-") if p not in TONES)


def _read_member(tarball: Path, member: str) -> object:
    with tarfile.open(tarball, "r:gz") as archive:
        handle = archive.extractfile(member)
        if handle is None:
            raise ValueError(f"{tarball} has no file {member}")
        return json.loads(handle.read().decode("utf-8"))


def parse_sources(raw: dict[str, object]) -> dict[str, dict]:
    """Each source's JSON -> {code key: {"tts": str or None, "keywords": [str, ...]}}, sources merged in
    the order of PACKAGES (CLDR first: its short name wins)."""
    merged: dict[str, dict] = {}

    def add(code: str, tts: str | None, words: list[str]) -> None:
        entry = merged.setdefault(code_key(code), {"tts": None, "keywords": []})
        if tts and not entry["tts"]:
            entry["tts"] = tts.lower()
        entry["keywords"] += [w.lower().replace("_", " ") for w in words]

    for source in PACKAGES:
        data = raw.get(source)
        if data is None:
            continue
        if source.startswith("cldr"):
            root = data["annotationsDerived" if source == "cldr_derived" else "annotations"]["annotations"]
            for char, value in root.items():
                add(char, (value.get("tts") or [None])[0], value.get("default", []))
        elif source == "emojibase":
            for entry in data:
                add(entry["hexcode"], entry.get("label"), entry.get("tags", []))
        else:  # emojilib: char -> [snake_case name, keywords...]
            for char, words in data.items():
                add(char, None, words[1:])
    return merged


def clean_keywords(words: list[str], names: list[str]) -> list[str]:
    """Keywords a prompt could use: letters only, one or two words, no word of a name, no repeats."""
    taken = {w for name in names for w in re.split(r"[\s:,-]+", name.lower()) if w}
    out: list[str] = []
    for word in words:
        word = word.strip()
        if len(word) < 3 or not _WORDS.match(word) or len(word.split()) > 2 or word in out:
            continue
        if any(part in taken for part in word.split()):
            continue
        out.append(word)
    return out[:MAX_KEYWORDS]


def annotate(records: list[dict], sources: dict[str, dict]) -> int:
    """Add `cldr_name` and `keywords` to each emoji record in place; returns how many records matched.

    A CLDR short name that is another emoji's dataset name is dropped: CLDR calls U+1F604 "grinning face
    with smiling eyes", which is Unicode's name of U+1F601, and one caption must not name two images."""
    owners: dict[str, set[str]] = {}
    for record in records:
        for name in (record["name"], *record.get("short_names", [])):
            owners.setdefault(name, set()).add(base_key(code_key(record["key"])))
    matched = 0
    for record in records:
        key = base_key(code_key(record["key"]))
        entry = sources.get(key)
        if entry is None:
            record.setdefault("cldr_name", None)
            record.setdefault("keywords", [])
            continue
        matched += 1
        tts = entry["tts"]
        record["cldr_name"] = tts if tts and owners.get(tts, {key}) == {key} else None
        names = [record["name"], *record.get("short_names", []), entry["tts"] or ""]
        record["keywords"] = clean_keywords(entry["keywords"], names)
    return matched


def load_sources(cache: Path, fetch: Callable[[str, str, Path], Path]) -> tuple[dict[str, dict], dict]:
    """Fetch (if needed) and parse every source; returns the merged words and info.json's entry.
    `fetch(package, version, cache)` -> the package's .tgz (`muse.data.emoji.fetch_tarball`)."""
    raw, info = {}, {}
    for source, (package, version, member) in PACKAGES.items():
        tarball = fetch(package, version, cache)
        raw[source] = _read_member(tarball, member)
        info[source] = {"package": package, "version": version, "license": LICENCES[source]}
    return parse_sources(raw), info


__all__ = ["PACKAGES", "code_key", "base_key", "parse_sources", "clean_keywords", "annotate", "load_sources"]
