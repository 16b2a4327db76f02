"""The benchmark scripts' building blocks run, at tiny sizes. No timing is asserted: speed lives in benchmarks/."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "benchmarks"
REF_PYTHON = BENCH.parent / ".bench" / "ref-venv" / "bin" / "python"
TINY = dict(num_tokens=32, grid=4, dim=32, depth=1, heads=2, dim_head=16, ff_mult=2, text_dim=384, text_len=5,
            text_tokens=3, timesteps=3)


def _load(name: str):
    if str(BENCH) not in sys.path:
        sys.path.insert(0, str(BENCH))
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def vs_reference():
    return _load("vs_reference")


def _tiny_settings(vs_reference) -> dict:
    return {**vs_reference.default_settings(), **TINY}


def test_helpers():
    bc = _load("bench_common")
    s = bc.summary([3.0, 1.0, 2.0])
    assert s["median"] == 2.0 and s["min"] == 1.0 and s["max"] == 3.0
    text = bc.table(["a", "bb"], [[1, 2.5], ["x", "y"]])
    assert text.splitlines()[1].startswith("-") and len(text.splitlines()) == 4
    assert bc.machine_info()["logical_cpus"] >= 1


@pytest.mark.parametrize("batch", [1, 2])
@pytest.mark.parametrize("critic", [False, True])
def test_ours_runner_generates_token_ids(vs_reference, batch, critic):
    settings = _tiny_settings(vs_reference)
    runner = vs_reference.OursRunner(settings)
    ids = runner.generate(batch, critic)
    assert ids.shape == (batch, 4, 4)
    assert int(ids.min()) >= 0 and int(ids.max()) < settings["num_tokens"]  # no mask id left


def test_text_embeddings_are_fixed_and_padded(vs_reference):
    settings = _tiny_settings(vs_reference)
    a, b = vs_reference.text_embeddings(2, settings), vs_reference.text_embeddings(2, settings)
    assert a.shape == (2, 5, 384) and (a == b).all()
    assert (a[:, 3:] == 0).all() and (a[:, :3] != 0).any(dim=-1).all()


def test_arguments_are_validated(vs_reference):
    args = vs_reference.parse_args(["--runs", "1", "--batch", "2", "--critic", "on", "--dim", "64"])
    s = vs_reference.settings_from_args(args)
    assert s["dim"] == 64 and args.batch == [2] and args.critic == ["on"]
    with pytest.raises(SystemExit):
        vs_reference.parse_args(["--num-tokens", "500"])  # the reference's quantizer needs a power of two
    with pytest.raises(SystemExit):
        vs_reference.parse_args(["--runs", "0"])


def test_ours_worker_protocol(vs_reference, tmp_path):
    """The driver's worker handle, end to end, on our side only (the reference needs its own venv)."""
    args = vs_reference.parse_args(["--threads", "1"])
    worker = vs_reference.Worker("ours", sys.executable, args, _tiny_settings(vs_reference))
    try:
        assert worker.info["side"] == "ours" and worker.info["threads"] == 1
        out = worker.run(2, True)
        assert out["ok"] and out["shape"] == [2, 4, 4] and out["wall"] > 0
    finally:
        worker.close()


@pytest.mark.skipif(not REF_PYTHON.exists(), reason="reference environment not set up (.bench/ref-venv)")
def test_reference_worker_protocol(vs_reference):
    args = vs_reference.parse_args(["--threads", "1"])
    worker = vs_reference.Worker("reference", str(REF_PYTHON), args, _tiny_settings(vs_reference))
    try:
        assert worker.info["impl"] == "muse-maskgit-pytorch 0.3.5"
        for critic in (False, True):
            out = worker.run(1, critic)
            assert out["ok"] and out["shape"] == [1, 4, 4]
    finally:
        worker.close()


def test_stream_overhead_and_latency_on_a_tiny_pipeline(tiny_weights, tmp_path, capsys):
    stream = _load("stream_overhead")
    ratio = stream.main(["--weights", str(tiny_weights), "--runs", "1", "--warmup", "0", "--threads", "1",
                         "--json", str(tmp_path / "stream.json")])
    assert ratio > 0
    data = json.loads((tmp_path / "stream.json").read_text())
    assert data["steps"] == 8 and data["ratio"] == ratio  # 4 steps (the tiny defaults) in each of 2 stages
    stream.main(["--weights", str(tiny_weights), "--runs", "1", "--warmup", "0", "--threads", "1", "--exact-previews",
                 "--json", str(tmp_path / "exact.json")])
    assert json.loads((tmp_path / "exact.json").read_text())["previews_decoded_by"] == "tokenizer decoder"
    latency = _load("latency")
    e2e, first = latency.main(["--weights", str(tiny_weights), "--runs", "1", "--warmup", "0", "--threads", "1",
                               "--json", str(tmp_path / "latency.json")])
    assert 0 < first and 0 < e2e
    out = capsys.readouterr().out
    assert "ratio preview/final:" in out and out.rstrip().endswith(f"first preview: {first:.3f} s")
