"""The GPU training transfer (`scripts/device/pack.py`): what it packs trains exactly as the weights and
data it came from would, within the device's 64 MiB."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file

from muse.train import stages
from muse.train.paths import RunFolder

from .test_train import _write_emoji_folder

ROOT = Path(__file__).resolve().parents[1]


def _pack_module():
    spec = importlib.util.spec_from_file_location("device_pack", ROOT / "scripts" / "device" / "pack.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_packed_run_trains_on_the_token_ids_of_the_full_images_and_the_given_weights(tmp_path, tiny_weights):
    pack = _pack_module()
    data = _write_emoji_folder(tmp_path / "data")
    pack.pack_data(data, tmp_path / "packed", tiny_weights, ["base"])
    pack.unpack_data(tmp_path / "packed", tmp_path / "dev")

    # Only the tokenizer and the named stage travel; the images travel at 32 px.
    assert sorted(p.name for p in (tmp_path / "packed" / "weights").iterdir()) == ["base", "vq"]
    assert np.load(tmp_path / "dev" / "emoji" / "images.npy").shape == (12, 32, 32, 3)
    run = RunFolder(tmp_path / "dev" / "run")
    assert run.stage("tokenizer").has_model() and run.stage("base").has_model()
    assert not run.stage("superres").has_model()

    # The ids the run trains on are those of the full 64 px images under the shipped tokenizer, as a run
    # seeded straight from the weights would encode them, not the 32 px stand-ins' (which `tokenize`
    # would encode if it did not trust the packed ids).
    reference = tmp_path / "reference"
    stages.init_run(reference, tiny_weights)
    expected = stages.tokenize(stages.StageArgs(run=reference, data=data))
    got = stages.tokenize(stages.StageArgs(run=run.root, data=tmp_path / "dev" / "emoji"))
    for key in ("ids32", "ids64"):
        assert torch.equal(got[key], expected[key])

    # The base starts from the given weights (float16 on the way: rounding only).
    shipped = load_file(str(tiny_weights / "base" / "model.safetensors"))
    seeded = load_file(str(tmp_path / "dev" / "weights" / "base" / "model.safetensors"))
    assert shipped.keys() == seeded.keys()
    assert all(torch.allclose(seeded[k], shipped[k], rtol=1e-3, atol=1e-4) for k in shipped)

