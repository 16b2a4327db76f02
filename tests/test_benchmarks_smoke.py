"""The benchmark scripts' building blocks run, at tiny sizes. No timing is asserted: speed lives in benchmarks/."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from benchmarks import bench_common, latency, stream_overhead, vs_reference

REF_PYTHON = Path(vs_reference.DEFAULT_VENV) / "bin" / "python"
TINY = dict(num_tokens=32, grid=4, dim=32, depth=1, heads=2, dim_head=16, ff_mult=2, text_dim=384, text_len=5,
            text_tokens=3, timesteps=3)
QUICK = ["--runs", "1", "--warmup", "0", "--threads", "1"]


def _tiny_settings() -> dict:
    return {**vs_reference.default_settings(), **TINY}


def test_helpers():
    s = bench_common.summary([3.0, 1.0, 2.0])
    assert s["median"] == 2.0 and s["min"] == 1.0 and s["max"] == 3.0
    text = bench_common.table(["a", "bb"], [[1, 2.5], ["x", "y"]])
    assert text.splitlines()[1].startswith("-") and len(text.splitlines()) == 4
    assert bench_common.machine_info()["logical_cpus"] >= 1
    assert list(bench_common.abba(3, ("a", "b"))) == ["a", "b", "b", "a", "a", "b"]


@pytest.mark.parametrize("batch", [1, 2])
@pytest.mark.parametrize("critic", [False, True])
def test_ours_runner_generates_token_ids(batch, critic):
    settings = _tiny_settings()
    runner = vs_reference.OursRunner(settings)
    ids = runner.generate(batch, critic)
    assert ids.shape == (batch, 4, 4) and ids.dtype == torch.long
    assert int(ids.min()) >= 0 and int(ids.max()) < settings["num_tokens"]  # no mask id left
    assert (runner.generate(batch, critic) == ids).all()  # the seed is part of the request


def test_ours_runner_is_the_public_call_on_the_shared_text():
    """Ours times `pipe(..., output_type="ids")`, whose text encoder answers with the shared embeddings."""
    settings = _tiny_settings()
    runner = vs_reference.OursRunner(settings)
    embeds, mask = runner.pipe.text_encoder([vs_reference.PROMPT] * 2)
    assert (embeds == vs_reference.text_embeddings(2, settings)).all()
    assert mask.tolist() == [[True] * 3 + [False] * 2] * 2
    ids = runner.pipe([vs_reference.PROMPT], output_type="ids", superres=False, use_critic=True, **runner.request)
    assert (ids == runner.generate(1, True)).all()


def test_text_embeddings_are_fixed_and_padded():
    settings = _tiny_settings()
    a, b = vs_reference.text_embeddings(2, settings), vs_reference.text_embeddings(2, settings)
    assert a.shape == (2, 5, 384) and (a == b).all()
    assert (a[:, 3:] == 0).all() and (a[:, :3] != 0).any(dim=-1).all()


def test_arguments_are_validated():
    args = vs_reference.parse_args(["--runs", "1", "--batch", "2", "--critic", "on", "--dim", "64"])
    s = vs_reference.settings_from_args(args)
    assert s["dim"] == 64 and args.batch == [2] and args.critic == ["on"]
    with pytest.raises(SystemExit):
        vs_reference.parse_args(["--num-tokens", "500"])  # the reference's quantizer needs a power of two
    with pytest.raises(SystemExit):
        vs_reference.parse_args(["--runs", "0"])


def test_ours_worker_protocol():
    """The driver's worker handle, end to end, on our side only (the reference needs its own venv)."""
    args = vs_reference.parse_args(["--threads", "1"])
    worker = vs_reference.Worker("ours", sys.executable, args, _tiny_settings())
    try:
        assert worker.info["side"] == "ours" and worker.info["threads"] == 1
        out = worker.run(2, True)
        assert out["ok"] and out["shape"] == [2, 4, 4] and out["wall"] > 0
        flops = worker.run(1, True, op="flops")["flops"]
        assert sum(flops.values()) > 0
    finally:
        worker.close()


@pytest.mark.skipif(not REF_PYTHON.exists(), reason="reference environment not set up (.bench/ref-venv)")
def test_reference_worker_protocol():
    args = vs_reference.parse_args(["--threads", "1"])
    worker = vs_reference.Worker("reference", str(REF_PYTHON), args, _tiny_settings())
    try:
        assert worker.info["impl"] == "muse-maskgit-pytorch 0.3.5"
        for critic in (False, True):
            out = worker.run(1, critic)
            assert out["ok"] and out["shape"] == [1, 4, 4]
    finally:
        worker.close()


def test_stream_overhead_and_latency_on_a_tiny_pipeline(tiny_weights, tmp_path, capsys):
    ratio = stream_overhead.main(["--weights", str(tiny_weights), *QUICK, "--json", str(tmp_path / "stream.json")])
    assert ratio > 0
    data = json.loads((tmp_path / "stream.json").read_text())
    assert data["steps"] == 8 and data["ratio"] == ratio  # 4 steps (the tiny defaults) in each of 2 stages
    assert data["benchmark"] == "stream_overhead" and data["model"] == str(tiny_weights)
    stream_overhead.main(["--weights", str(tiny_weights), *QUICK, "--exact-previews",
                          "--json", str(tmp_path / "exact.json")])
    assert json.loads((tmp_path / "exact.json").read_text())["previews_decoded_by"] == "tokenizer decoder"
    e2e, first = latency.main(["--weights", str(tiny_weights), *QUICK, "--json", str(tmp_path / "latency.json")])
    assert 0 < first and 0 < e2e
    data = json.loads((tmp_path / "latency.json").read_text())
    assert data["end_to_end_s"]["median"] == e2e and data["first_preview_s"]["median"] == first
    out = capsys.readouterr().out
    assert "ratio preview/final:" in out and out.rstrip().endswith(f"first preview: {first:.3f} s")


def test_a_preset_is_timed_with_random_weights(tmp_path):
    """--preset builds through muse.presets, and the pipeline goes through load_pipeline's loading path."""
    ratio = stream_overhead.main(["--preset", "tiny", *QUICK, "--json", str(tmp_path / "stream.json")])
    data = json.loads((tmp_path / "stream.json").read_text())
    assert ratio > 0 and data["model"] == "preset tiny (random weights)"
    assert data["pipeline"]["base_model"]["dim"] == 32  # the tiny preset's width


@pytest.mark.parametrize("script", ["latency.py", "stream_overhead.py", "vs_reference.py", "robustness.py"])
def test_scripts_run_as_files(script):
    """The documented commands (`python benchmarks/x.py`) import their packages from the repository root."""
    out = subprocess.run([sys.executable, str(Path(bench_common.__file__).parent / script), "--help"],
                         capture_output=True, text=True, timeout=120, cwd="/")
    assert out.returncode == 0, out.stderr
    assert "usage:" in out.stdout


def test_train_speed_times_both_precisions(tmp_path):
    from benchmarks import train_speed

    out = tmp_path / "speed.json"
    assert train_speed.main(["--steps", "1", "--rounds", "1", "--batch-size", "2", "--threads", "1",
                             "--json", str(out)]) == 0
    stages = json.loads(out.read_text())["stages"]
    assert set(stages) == {"base", "superres"} and all(s["speedup"] > 0 for s in stages.values())
