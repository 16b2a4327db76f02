"""Build the emoji dataset (Noto + Twemoji, 64x64) from the npm `emoji-datasource-*` packages.

    python -m muse.data.emoji [--cache .cache/emoji] [--out data/emoji]

Writes `images.npy` (N, 64, 64, 3) uint8, `meta.jsonl` (one record per image) and `info.json`. Each
record holds the emoji's names, the words people use for it (`muse.data.emoji_words`) and the colour
most of its drawing has (`dominant_colour`): what `muse.data.captions` builds captions from.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tarfile
from collections.abc import Callable, Iterator
from pathlib import Path, PurePosixPath

import numpy as np
from PIL import Image

from muse.data import emoji_words
from muse.data.folder import to_rgb_array

VERSION = "16.0.0"
IMAGE_SIZE = 64
# set name -> (npm package, image folder inside it, licence of the images)
SETS = {
    "noto": ("emoji-datasource-google", "google", "Apache-2.0"),
    "twemoji": ("emoji-datasource-twitter", "twitter", "CC-BY-4.0"),
}
SKIN_TONES = {
    "1f3fb": "light skin tone",
    "1f3fc": "medium-light skin tone",
    "1f3fd": "medium skin tone",
    "1f3fe": "medium-dark skin tone",
    "1f3ff": "dark skin tone",
}


class NpmNotFoundError(RuntimeError):
    """`npm` is needed to download the emoji packages and is not on PATH."""


def npm_pack(spec: str, cwd: Path) -> None:
    """Download `spec` (e.g. 'emoji-datasource-google@16.0.0') as a .tgz into `cwd` with `npm pack`."""
    npm = shutil.which("npm")
    if npm is None:
        raise NpmNotFoundError(
            "npm is not on PATH; it downloads the emoji images. Install Node.js (which ships npm), "
            "e.g. `apt-get install npm` or https://nodejs.org, or put the .tgz files from "
            f"`npm pack {spec}` into {cwd}."
        )
    result = subprocess.run([npm, "pack", spec], cwd=cwd, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"`npm pack {spec}` failed in {cwd}:\n{result.stderr.strip()}")


def fetch_tarball(package: str, version: str, cache: Path, download: Callable[[str, Path], None]) -> Path:
    """Path of `package-version.tgz` in `cache`, downloaded with `download` only when missing."""
    tarball = cache / f"{package}-{version}.tgz"  # the file name `npm pack` writes
    if not tarball.is_file():
        cache.mkdir(parents=True, exist_ok=True)
        download(f"{package}@{version}", cache)
        if not tarball.is_file():
            raise RuntimeError(f"downloading {package}@{version} did not produce {tarball}")
    return tarball


def _is_safe_member(member: tarfile.TarInfo) -> bool:
    path = PurePosixPath(member.name)
    return (
        member.isfile()  # no links or devices: they could point outside the destination
        and not path.is_absolute()
        and ".." not in path.parts
        and path.parts[:1] == ("package",)
    )


def extract_package(tarball: Path, dest: Path, image_dir: str) -> Path:
    """Extract emoji.json, package.json and the 64px PNGs of `tarball` into `dest`; returns `dest/package`."""
    wanted = (f"package/img/{image_dir}/{IMAGE_SIZE}/", "package/emoji.json", "package/package.json")
    if dest.exists():
        shutil.rmtree(dest)  # a stale or half-finished extraction must not mix with this one
    dest.mkdir(parents=True)
    # The data filter (Python >= 3.11.4) re-checks what _is_safe_member already guarantees.
    extra = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
    with tarfile.open(tarball, "r:gz") as archive:
        members = [m for m in archive if _is_safe_member(m) and m.name.startswith(wanted)]
        archive.extractall(dest, members=members, **extra)
    package = dest / "package"
    if not (package / "emoji.json").is_file():
        raise ValueError(f"{tarball} has no package/emoji.json; is it an emoji-datasource package?")
    return package


def skin_tone_words(code: str) -> str:
    """'1F3FB-1F3FC' -> 'light skin tone, medium-light skin tone'; a repeated tone is said once."""
    tones = dict.fromkeys(SKIN_TONES[part] for part in code.lower().split("-"))
    return ", ".join(tones)


# colour name -> hue range in degrees [lo, hi) for saturated pixels (red wraps around 0)
HUES = {"red": (345, 375), "orange": (15, 40), "yellow": (40, 70), "green": (70, 165), "blue": (165, 255),
        "purple": (255, 290), "pink": (290, 345)}
MIN_COLOUR_SHARE = 0.35


def pixel_colours(image: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 -> (H, W) names of each pixel's colour ('' for the white background)."""
    rgb = image.astype(np.float32) / 255.0
    hi, lo = rgb.max(-1), rgb.min(-1)
    sat = np.where(hi > 0, (hi - lo) / np.maximum(hi, 1e-6), 0.0)
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    delta = np.maximum(hi - lo, 1e-6)
    hue = np.select([hi == r, hi == g], [((g - b) / delta) % 6, (b - r) / delta + 2], (r - g) / delta + 4) * 60
    hue = np.where(hue < 15, hue + 360, hue)  # red's range wraps: [345, 375)
    names = np.full(image.shape[:2], "grey", dtype=object)
    for name, (a, z) in HUES.items():
        names[(sat >= 0.25) & (hue >= a) & (hue < z)] = name
    names[(sat >= 0.25) & (hi < 0.6) & (hue >= 15) & (hue < 50)] = "brown"  # a dark orange is brown
    names[hi < 0.2] = "black"
    names[(sat < 0.25) & (hi >= 0.85)] = "white"
    names[lo > 0.94] = ""  # the background the PNG was composited on
    return names


def dominant_colour(image: np.ndarray) -> str | None:
    """The colour of at least 35 % of the drawing's pixels (a yellow face, a red apple), else None."""
    names = pixel_colours(image)
    drawn = names[names != ""]
    if drawn.size == 0:
        return None
    values, counts = np.unique(drawn.astype(str), return_counts=True)
    best = int(counts.argmax())
    return str(values[best]) if counts[best] >= MIN_COLOUR_SHARE * drawn.size else None


def iter_images(entries: list[dict], set_name: str, image_dir: str) -> Iterator[tuple[dict, str]]:
    """(meta record, image file name) for each base emoji and skin variation drawn in this set."""
    flag = f"has_img_{image_dir}"
    for entry in sorted(entries, key=lambda e: e.get("sort_order", 0)):
        short_names = [n.replace("_", " ") for n in entry.get("short_names") or [entry["short_name"]]]
        name = (entry.get("name") or short_names[0]).lower()
        subcategory = (entry.get("subcategory") or "").replace("-", " ")
        variants = [(entry, None)]
        variants += [(v, skin_tone_words(code)) for code, v in (entry.get("skin_variations") or {}).items()]
        for variant, tone in variants:
            if variant.get(flag):
                record = {
                    "key": variant["unified"].lower(),
                    "set": set_name,
                    "name": name,
                    "short_names": short_names,
                    "skin_tone": tone,
                    "category": entry.get("category"),
                    "subcategory": subcategory,
                }
                yield record, variant["image"]


def build_emoji_dataset(
    cache: str | Path = ".cache/emoji",
    out: str | Path = "data/emoji",
    version: str = VERSION,
    download: Callable[[str, Path], None] = npm_pack,
    words: bool = True,
) -> dict:
    """Download (if needed), extract and convert both sets; writes `out` and returns its info.json.
    With `words`, the annotation packages are fetched too and joined to the records."""
    cache, out = Path(cache), Path(out)
    images: list[np.ndarray] = []
    records: list[dict] = []
    info: dict = {"image_size": IMAGE_SIZE, "sets": {}}
    for set_name, (package_name, image_dir, licence) in SETS.items():
        tarball = fetch_tarball(package_name, version, cache, download)
        package = extract_package(tarball, cache / f"{package_name}-{version}", image_dir)
        entries = json.loads((package / "emoji.json").read_text(encoding="utf-8"))
        package_json = package / "package.json"
        # package.json is the truth about what was fetched, should npm have resolved another version
        fetched = json.loads(package_json.read_text())["version"] if package_json.is_file() else version
        png_dir = package / "img" / image_dir / str(IMAGE_SIZE)
        count = missing = 0
        for record, file_name in iter_images(entries, set_name, image_dir):
            path = png_dir / file_name
            if not path.is_file():
                missing += 1  # flagged as drawn, yet not shipped: nothing to learn from
                continue
            with Image.open(path) as image:
                images.append(to_rgb_array(image, IMAGE_SIZE))
            record["colour"] = None if record["skin_tone"] else dominant_colour(images[-1])  # a tone is not a colour
            records.append(record)
            count += 1
        info["sets"][set_name] = {
            "package": package_name,
            "version": fetched,
            "images": count,
            "missing_files": missing,
            "image_license": licence,
        }
        print(f"{set_name}: {count} images from {package_name}@{fetched} ({missing} missing files skipped)")
    if words:
        sources, info["words"] = emoji_words.load_sources(
            cache, lambda package, version, folder: fetch_tarball(package, version, folder, download))
        matched = emoji_words.annotate(records, sources)
        print(f"words for {matched} of {len(records)} images from {', '.join(info['words'])}")
    info["images"] = len(records)
    out.mkdir(parents=True, exist_ok=True)
    array = np.stack(images) if images else np.zeros((0, IMAGE_SIZE, IMAGE_SIZE, 3), np.uint8)
    np.save(out / "images.npy", array, allow_pickle=False)
    with open(out / "meta.jsonl", "w", encoding="utf-8") as handle:
        handle.writelines(json.dumps(record, ensure_ascii=False) + "\n" for record in records)
    (out / "info.json").write_text(json.dumps(info, indent=2) + "\n")
    print(f"wrote {len(records)} images {array.shape} to {out}")
    return info


def main(argv: list[str] | None = None) -> int:
    """Command line entry point; returns the exit status."""
    parser = argparse.ArgumentParser(prog="python -m muse.data.emoji", description=__doc__.splitlines()[0])
    parser.add_argument("--cache", default=".cache/emoji", help="where the npm .tgz files are kept")
    parser.add_argument("--out", default="data/emoji", help="output folder")
    parser.add_argument("--version", default=VERSION, help="emoji-datasource version")
    parser.add_argument("--no-words", action="store_true", help="skip the annotation packages (names only)")
    args = parser.parse_args(argv)
    try:
        build_emoji_dataset(args.cache, args.out, args.version, words=not args.no_words)
    except (RuntimeError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
