"""Dataset layer: emoji builder on a fake npm package, captions, folder datasets, load_dataset."""

from __future__ import annotations

import io
import json
import random
import shutil
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from muse.data import CaptionedImages, load_dataset
from muse.data import emoji, emoji_words
from muse.data.captions import (HELD_OUT, PAIR_TEMPLATE, caption_distribution, exact_name, sample_caption,
                                second_name, subjects)

WAVE = {
    "key": "1f44b-1f3fd",
    "set": "noto",
    "name": "waving hand sign",
    "short_names": ["wave", "waving hand"],
    "skin_tone": "medium skin tone",
    "category": "People & Body",
    "subcategory": "hand fingers open",
}


def _png(color: tuple[int, int, int, int], size: int = 64) -> bytes:
    """A square RGBA PNG: `color` with a fully transparent top-left pixel."""
    image = Image.new("RGBA", (size, size), color)
    image.putpixel((0, 0), (10, 20, 30, 0))
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def _entry(name: str | None, unified: str, short_names: list[str], sort_order: int, **extra: object) -> dict:
    image = unified.lower() + ".png"
    return {
        "name": name, "unified": unified, "image": image, "short_name": short_names[0],
        "short_names": short_names, "category": "People & Body", "subcategory": "hand-fingers-open",
        "sort_order": sort_order, "has_img_google": True, "has_img_twitter": True, **extra,
    }


def _fake_package(cache: Path, package: str, image_dir: str, evil: bool = False) -> None:
    """Write `<package>-16.0.0.tgz` laid out like the real npm package, into `cache`."""
    entries = [
        _entry("WAVING HAND SIGN", "1F44B", ["wave", "waving_hand"], 2, skin_variations={
            "1F3FD": {"unified": "1F44B-1F3FD", "image": "1f44b-1f3fd.png",
                      "has_img_google": True, "has_img_twitter": False},
            "1F3FB-1F3FC": {"unified": "1F44B-1F3FB-1F3FC", "image": "1f44b-1f3fb-1f3fc.png",
                            "has_img_google": True, "has_img_twitter": True},
        }),
        _entry(None, "1F600", ["grinning_face"], 1),  # sorted first by sort_order
        _entry("NOT DRAWN", "1F601", ["nope"], 3, has_img_google=False, has_img_twitter=False),
        _entry("NOT SHIPPED", "1F602", ["gone"], 4),  # flagged as drawn, but no PNG in the package
    ]
    files = {
        "package/emoji.json": json.dumps(entries).encode(),
        "package/package.json": json.dumps({"name": package, "version": "16.0.0"}).encode(),
    }
    for name, color in [("1f44b", (255, 0, 0, 255)), ("1f44b-1f3fd", (0, 255, 0, 128)),
                        ("1f44b-1f3fb-1f3fc", (0, 0, 255, 255)), ("1f600", (0, 0, 0, 0))]:
        files[f"package/img/{image_dir}/64/{name}.png"] = _png(color)
    if evil:
        files["../escape.txt"] = b"outside"
        files["/tmp/absolute.txt"] = b"absolute"
    cache.mkdir(parents=True, exist_ok=True)
    with tarfile.open(cache / f"{package}-16.0.0.tgz", "w:gz") as archive:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))


def _tarball(path: Path, files: dict[str, bytes]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz") as archive:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))


def _fake_words(cache: Path) -> None:
    """The four annotation packages, each with the words of U+1F44B (waving hand) and U+1F600."""
    wave, grin = "\U0001F44B", "\U0001F600"
    sources = {
        "cldr": {"annotations": {"annotations": {
            wave: {"default": ["hand", "wave", "hello"], "tts": ["waving hand"]},
            grin: {"default": ["face", "grin"], "tts": ["grinning face"]}}}},
        "cldr_derived": {"annotationsDerived": {"annotations": {
            wave + "\U0001F3FD": {"default": ["hello"], "tts": ["waving hand: medium skin tone"]}}}},
        "emojibase": [{"label": "waving hand", "hexcode": "1F44B", "tags": ["bye", "hi"]}],
        "emojilib": {wave: ["waving_hand", "goodbye", ":wave:", "farewell"]},
    }
    for source, (package, version, member) in emoji_words.PACKAGES.items():
        _tarball(cache / f"{package}-{version}.tgz", {member: json.dumps(sources[source]).encode()})


def _no_download(spec: str, cwd: Path) -> None:
    raise AssertionError(f"tried to download {spec} although its tarball is cached")


@pytest.fixture
def built(tmp_path: Path) -> Path:
    for package, image_dir, _ in emoji.SETS.values():
        _fake_package(tmp_path / "cache", package, image_dir)
    _fake_words(tmp_path / "cache")
    emoji.build_emoji_dataset(tmp_path / "cache", tmp_path / "out", download=_no_download)
    return tmp_path / "out"


def test_emoji_builder_writes_images_and_meta(built: Path) -> None:
    assert sorted(p.name for p in built.iterdir()) == ["images.npy", "info.json", "meta.jsonl"]
    images = np.load(built / "images.npy", allow_pickle=False)
    records = [json.loads(line) for line in (built / "meta.jsonl").read_text().splitlines()]
    # noto: base, 2 variations, grinning; twemoji lacks the medium-tone variation; "not drawn" skipped
    assert images.shape == (7, 64, 64, 3) and images.dtype == np.uint8
    assert [(r["set"], r["key"]) for r in records] == [
        ("noto", "1f600"), ("noto", "1f44b"), ("noto", "1f44b-1f3fd"), ("noto", "1f44b-1f3fb-1f3fc"),
        ("twemoji", "1f600"), ("twemoji", "1f44b"), ("twemoji", "1f44b-1f3fb-1f3fc"),
    ]
    grin, wave, medium, mixed = records[:4]
    assert grin["name"] == "grinning face" and grin["short_names"] == ["grinning face"]
    assert wave == {"key": "1f44b", "set": "noto", "name": "waving hand sign",
                    "short_names": ["wave", "waving hand"], "skin_tone": None,
                    "category": "People & Body", "subcategory": "hand fingers open", "colour": "red",
                    # CLDR's short name and the words of all four sources, none a word of a name
                    "cldr_name": "waving hand", "keywords": ["hello", "bye", "goodbye", "farewell"]}
    assert medium["skin_tone"] == "medium skin tone"
    assert medium["cldr_name"] == "waving hand" and medium["colour"] is None  # a skin tone is not a colour
    assert grin["colour"] is None  # all white: nothing drawn
    assert mixed["skin_tone"] == "light skin tone, medium-light skin tone"
    assert (images[:, 0, 0] == 255).all()  # the transparent pixel became white
    assert (images[0] == 255).all()  # a fully transparent image is white
    assert images[1, 5, 5].tolist() == [255, 0, 0]
    assert images[2, 5, 5].tolist() == pytest.approx([127, 255, 127], abs=1)  # half green over white
    info = json.loads((built / "info.json").read_text())
    assert info["images"] == 7
    assert {k: v["images"] for k, v in info["sets"].items()} == {"noto": 4, "twemoji": 3}
    assert info["sets"]["noto"]["version"] == "16.0.0" and info["sets"]["noto"]["missing_files"] == 1
    assert info["words"]["cldr"] == {"package": "cldr-annotations-full", "version": "48.2.0",
                                     "license": "Unicode-3.0"}


def test_emoji_dataset_loads_and_resizes(built: Path) -> None:
    data = load_dataset(built)
    assert len(data) == 7 and data.images.shape == (7, 64, 64, 3)
    rng = random.Random(0)
    assert all(isinstance(data.caption(i, rng), str) for i in range(len(data)))
    small = load_dataset(built, image_size=32)
    assert small.images.shape == (7, 32, 32, 3) and small.images.dtype == np.uint8
    part = data.subset([3, 1])
    assert len(part) == 2 and part.records[0]["key"] == "1f44b-1f3fb-1f3fc"
    assert np.array_equal(part.images[1], data.images[1])


def test_download_runs_only_when_tarball_missing(tmp_path: Path) -> None:
    calls = []

    def fake_npm_pack(spec: str, cwd: Path) -> None:
        calls.append(spec)
        package = spec.split("@")[0]
        _fake_package(cwd, package, {p: d for p, d, _ in emoji.SETS.values()}[package])

    emoji.build_emoji_dataset(tmp_path / "cache", tmp_path / "out", download=fake_npm_pack, words=False)
    assert calls == ["emoji-datasource-google@16.0.0", "emoji-datasource-twitter@16.0.0"]
    emoji.build_emoji_dataset(tmp_path / "cache", tmp_path / "out", download=fake_npm_pack, words=False)
    assert len(calls) == 2
    assert "cldr_name" not in json.loads((tmp_path / "out" / "meta.jsonl").read_text().splitlines()[0])


def test_extraction_ignores_unsafe_members(tmp_path: Path) -> None:
    _fake_package(tmp_path / "cache", "emoji-datasource-google", "google", evil=True)
    package = emoji.extract_package(tmp_path / "cache" / "emoji-datasource-google-16.0.0.tgz",
                                    tmp_path / "x" / "dest", "google")
    assert (package / "emoji.json").is_file()
    assert not (tmp_path / "x" / "escape.txt").exists() and not (tmp_path / "x" / "dest" / "tmp").exists()


def test_missing_npm_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(shutil, "which", lambda name, *args, **kwargs: None)
    with pytest.raises(emoji.NpmNotFoundError, match="Node.js"):
        emoji.npm_pack("emoji-datasource-google@16.0.0", tmp_path)
    assert emoji.main(["--cache", str(tmp_path / "cache"), "--out", str(tmp_path / "out")]) == 1
    assert "npm is not on PATH" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_skin_tone_words() -> None:
    assert emoji.skin_tone_words("1F3FF") == "dark skin tone"
    assert emoji.skin_tone_words("1F3FE-1F3FB") == "medium-dark skin tone, light skin tone"
    assert emoji.skin_tone_words("1F3FC-1F3FC") == "medium-light skin tone"


def test_names_captions() -> None:
    assert subjects(WAVE) == ["waving hand sign, medium skin tone", "wave, medium skin tone",
                              "waving hand, medium skin tone"]
    assert exact_name(WAVE) == "waving hand sign, medium skin tone"
    plain = {**WAVE, "skin_tone": None}
    assert exact_name(plain) == "waving hand sign"
    draws = [sample_caption(WAVE, random.Random(7), "names") for _ in range(3)]
    assert len(set(draws)) == 1  # same seed, same caption
    rng = random.Random(0)
    captions = [sample_caption(plain, rng, "names") for _ in range(2000)]
    share = caption_distribution(plain, "names")["waving hand sign"]
    assert abs(captions.count("waving hand sign") / len(captions) - share) < 0.03  # drawn as the distribution says
    assert any("noto" in c for c in captions) and any("hand fingers open" in c for c in captions)
    assert all("wave" in c or "waving hand" in c for c in captions)
    twemoji = [sample_caption({**plain, "set": "twemoji"}, rng, "names") for _ in range(200)]
    assert any("twemoji" in c for c in twemoji) and not any("noto" in c for c in twemoji)


SUN = {"key": "2600", "set": "noto", "name": "black sun with rays", "short_names": ["sunny"], "skin_tone": None,
       "subcategory": "sky & weather", "colour": "yellow", "cldr_name": "sun", "keywords": ["bright", "weather"]}


def test_prompt_captions_read_like_prompts_and_keep_the_exact_name() -> None:
    dist = caption_distribution(SUN)
    assert sum(dist.values()) == pytest.approx(1.0)
    # the exact name keeps at least the names recipe's share
    exact = dist["black sun with rays"]
    assert exact == pytest.approx(0.45) and exact > caption_distribution(SUN, "names")["black sun with rays"]
    assert dist["sun"] == pytest.approx(0.10)  # CLDR's short name is a second name, alone
    for caption in ("a sun", "a yellow sun", "sun, yellow", "an emoji of black sun with rays", "sun emoji",
                    "sun, bright", "sun, bright and weather", "a noto emoji of sunny"):
        assert caption in dist, caption
    assert not any("twemoji" in c for c in dist)
    draws = [sample_caption(SUN, random.Random(i)) for i in range(3000)]
    assert abs(draws.count("sun") / len(draws) - dist["sun"]) < 0.03
    # a skin tone ends every caption; no colour or CLDR name: their shares go to the templates
    toned = caption_distribution({**WAVE, "cldr_name": None, "keywords": ["hello"]})
    assert all(c.endswith(", medium skin tone") for c in toned)
    assert sum(toned.values()) == pytest.approx(1.0) and "waving hand sign, hello, medium skin tone" in toned
    assert second_name({**SUN, "cldr_name": "black sun with rays"}) is None


def test_held_out_paraphrases_are_never_training_captions() -> None:
    """A recipe that would make a paraphrase ("a thumbs up" from CLDR's "thumbs up") leaves it out."""
    thumbs = {"key": "1f44d", "set": "noto", "name": "thumbs up sign", "short_names": ["+1"], "skin_tone": None,
              "subcategory": "hand fingers closed", "colour": "yellow", "cldr_name": "thumbs up", "keywords": []}
    assert "a thumbs up" in HELD_OUT
    for recipe in ("names", "prompts"):
        dist = caption_distribution(thumbs, recipe)
        assert not HELD_OUT & set(dist) and sum(dist.values()) == pytest.approx(1.0)
    assert "a thumbs up" not in {sample_caption(thumbs, random.Random(i)) for i in range(500)}
    assert PAIR_TEMPLATE.format(s="sun", k="bright", j="hot") == "sun, bright and hot"


def test_emoji_words_join_on_the_code_point() -> None:
    assert emoji_words.code_key("2600-FE0F") == emoji_words.code_key("\u2600\ufe0f") == "2600"
    assert emoji_words.base_key("1f44d-1f3fb") == "1f44d"
    words = emoji_words.clean_keywords(["sun", "sunny day", "hot", "too many words here", ":)", "ok", "hot"],
                                       ["black sun with rays"])
    assert words == ["sunny day", "hot"]  # a name's word, four words, symbols, two letters and repeats go
    # a CLDR name that is another emoji's dataset name is dropped: one caption, one emoji
    records = [{"key": "1f604", "name": "smiling face with open mouth and smiling eyes", "short_names": []},
               {"key": "1f601", "name": "grinning face with smiling eyes", "short_names": []}]
    sources = {"1f604": {"tts": "grinning face with smiling eyes", "keywords": []},
               "1f601": {"tts": "beaming face with smiling eyes", "keywords": []}}
    assert emoji_words.annotate(records, sources) == 2
    assert [r["cldr_name"] for r in records] == [None, "beaming face with smiling eyes"]


def test_dominant_colour_names_the_drawing_not_the_background() -> None:
    image = np.full((64, 64, 3), 255, np.uint8)
    assert emoji.dominant_colour(image) is None
    image[16:48, 16:48] = (250, 200, 20)  # a yellow square on white
    assert emoji.dominant_colour(image) == "yellow"
    image[16:48, 16:27] = (200, 30, 30)  # three colours, none of them 35 % of the drawing
    image[16:48, 27:38] = (30, 60, 220)
    image[16:48, 38:48] = (30, 160, 30)
    assert emoji.dominant_colour(image) is None
    image[16:48, 16:48] = (120, 70, 20)
    assert emoji.dominant_colour(image) == "brown"
    image[16:48, 16:38] = (30, 60, 220)
    assert emoji.dominant_colour(image) == "blue"  # 69 % blue
    image[16:48, 16:48] = (200, 30, 30)
    assert emoji.dominant_colour(image) == "red"


def _save(path: Path, image: Image.Image) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)


def _image_folder(root: Path) -> Path:
    transparent = Image.new("RGBA", (40, 30), (255, 0, 0, 255))
    transparent.paste((0, 0, 0, 0), (0, 0, 40, 30 // 2))  # top half fully transparent
    _save(root / "rgba.png", transparent)
    _save(root / "gray.jpg", Image.new("L", (100, 300), 128))
    _save(root / "sub" / "odd.bmp", Image.new("RGB", (7, 5), (0, 0, 255)))
    _save(root / "deep.png", Image.fromarray(np.full((20, 20), 65535, np.uint16)))
    _save(root / "uncaptioned.webp", Image.new("RGB", (8, 8)))
    return root


def test_folder_dataset_jsonl(tmp_path: Path) -> None:
    root = _image_folder(tmp_path / "imgs")
    lines = [{"file": "rgba.png", "caption": "a red square"},
             {"file": "gray.jpg", "caption": ["grey", "a grey photo"]},
             {"file": "sub/odd.bmp", "caption": "blue"},
             {"file": "deep.png", "caption": "white"}]
    (root / "captions.jsonl").write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    with pytest.warns(UserWarning, match="skipped 1 images without a caption"):
        data = load_dataset(root, image_size=16)
    assert isinstance(data, CaptionedImages)
    assert data.images.shape == (4, 16, 16, 3) and data.images.dtype == np.uint8
    by_key = {r["key"]: i for i, r in enumerate(data.records)}
    assert set(by_key) == {"rgba.png", "gray.jpg", "sub/odd.bmp", "deep.png"}
    rgba = data.images[by_key["rgba.png"]]
    assert rgba[0, 8].tolist() == [255, 255, 255] and rgba[15, 8].tolist() == [255, 0, 0]
    assert np.abs(data.images[by_key["gray.jpg"]].astype(int) - 128).max() <= 2
    assert (data.images[by_key["sub/odd.bmp"]] == [0, 0, 255]).all()
    assert (data.images[by_key["deep.png"]] == 255).all()  # 16-bit white stays white, not clipped
    rng = random.Random(0)
    assert {data.caption(by_key["gray.jpg"], rng) for _ in range(50)} == {"grey", "a grey photo"}


def test_folder_dataset_csv(tmp_path: Path) -> None:
    root = _image_folder(tmp_path / "imgs")
    rows = 'file,caption\nrgba.png,"red, on white"\nrgba.png,red\ngray.jpg,grey\n'
    (root / "captions.csv").write_text(rows)
    with pytest.warns(UserWarning, match="skipped 3 images"):
        data = load_dataset(root, image_size=8)
    assert data.images.shape == (2, 8, 8, 3)
    assert {r["key"]: r["captions"] for r in data.records} == {"gray.jpg": ["grey"],
                                                              "rgba.png": ["red, on white", "red"]}


def test_folder_caption_for_missing_file(tmp_path: Path) -> None:
    root = _image_folder(tmp_path / "imgs")
    (root / "captions.jsonl").write_text(json.dumps({"file": "ghost.png", "caption": "boo"}) + "\n")
    with pytest.raises(FileNotFoundError, match="ghost.png"):
        load_dataset(root)


def test_folder_refuses_decompression_bombs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = _image_folder(tmp_path / "imgs")
    (root / "captions.jsonl").write_text(json.dumps({"file": "gray.jpg", "caption": "big"}) + "\n")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # 100x300 is then over PIL's 2x hard limit
    with pytest.warns(UserWarning), pytest.raises(ValueError, match="too many pixels"):
        load_dataset(root)


def test_unknown_folder_is_a_value_error(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(ValueError, match="not a dataset"):
        load_dataset(tmp_path)
    with pytest.raises(ValueError, match="not a dataset"):
        load_dataset(tmp_path / "does-not-exist")
