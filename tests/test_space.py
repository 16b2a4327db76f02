"""Deploying to a Space (`muse.space`), the Hub metadata, and the default weights of an installed wheel.

The fast tests need no network: the upload is checked against a stand-in HfApi. The slow one works as the
Space builder does: a clean venv from requirements.txt alone, exactly the dry run's files in an empty
folder, `python app.py` there, and one image generated through gradio_client."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

import muse.loader
from muse.hub import CARD_METADATA, WeightsError, push_folder_to_hub
from muse.space import check_space, main, space_files
from tests.harness import running_app

ROOT = Path(__file__).resolve().parents[1]
GOOD_FRONT_MATTER = """---
title: t
sdk: gradio
sdk_version: 6.31.0
app_file: app.py
license: mit
python_version: "3.11"
suggested_hardware: cpu-basic
tags: [text-to-image]
---

# a Space
![shown](docs/shown.png) and a [link](https://example.org/x.png)
"""


def make_checkout(root: Path, front_matter: str = GOOD_FRONT_MATTER, gitattributes: bool = True) -> Path:
    """A small checkout with the layout of this one, and files that must not reach a Space."""
    files = {"app.py": "print('app')\n", "requirements.txt": "torch==2.13.0\ngradio==6.31.0\n",
             "README.md": front_matter, "muse/__init__.py": "", "muse/__pycache__/x.cpython-311.pyc": "",
             "muse/train/loop.py": "", "weights/pipeline.json": "{}", "docs/unshown.png": "",
             "tests/test_x.py": "", "benchmarks/b.py": "", "runs/r/log.txt": "", "data/d.txt": ""}
    if gitattributes:
        files[".gitattributes"] = "*.safetensors filter=lfs diff=lfs merge=lfs -text\n*.png filter=lfs -text\n"
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    (root / "weights/base").mkdir()
    (root / "weights/base/model.safetensors").write_bytes(b"\x10\0\0\0" * 100)  # binary: NUL bytes
    (root / "docs/shown.png").write_bytes(b"\x89PNG\r\n\x1a\n\0")
    return root


# ----- the file set and the checks --------------------------------------------------------------------

def test_the_file_set_of_this_checkout_is_what_a_space_needs():
    files = space_files(ROOT)
    paths = {f.path for f in files}
    assert {"app.py", "requirements.txt", "README.md", ".gitattributes", "muse/__init__.py", "muse/space.py",
            "weights/pipeline.json", "weights/README.md", "weights/base/model.safetensors"} <= paths
    shipped = {p.relative_to(ROOT).as_posix() for p in (ROOT / "weights").rglob("*") if p.is_file()}
    assert shipped <= paths  # weights/ as it is
    assert "docs/generate.png" in paths  # the README shows it
    assert not [p for p in paths if p.split("/")[0] in ("tests", "benchmarks", "runs", "data", "scripts", ".venv")]
    assert not [p for p in paths if "__pycache__" in p or p.endswith(".pyc")]
    assert not [p for p in paths if p.endswith((".pyi", "/.gitignore"))]  # Gradio's stubs, git's own files
    assert all(f.size == (ROOT / f.path).stat().st_size for f in files)
    assert [f.path for f in files] == sorted(paths)


def test_the_file_set_of_a_small_checkout(tmp_path):
    root = make_checkout(tmp_path)
    assert [f.path for f in space_files(root)] == [
        ".gitattributes", "README.md", "app.py", "docs/shown.png", "muse/__init__.py", "muse/train/loop.py",
        "requirements.txt", "weights/base/model.safetensors", "weights/pipeline.json"]
    assert check_space(root, space_files(root)) == []


def test_the_dry_run_of_this_checkout_passes(capsys):
    assert main(["deploy", "someone/muse", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "dry run: nothing is uploaded" in out and "checks passed" in out
    assert re.search(r"\d+\.\d MB  weights/base/model\.safetensors  \(LFS\)", out)
    assert re.search(r"\d+\.\d MB  total, \d+ files", out)


def test_each_problem_is_named_and_the_dry_run_fails(tmp_path, capsys):
    bad = GOOD_FRONT_MATTER.replace('python_version: "3.11"', "python_version: 3.10").replace(
        "sdk_version: 6.31.0", "sdk_version: 6.0.0").replace("cpu-basic", "huge-gpu").replace(
        "tags: [text-to-image]\n", "").replace("app_file: app.py", "app_file: main.py").replace("license: mit\n", "")
    root = make_checkout(tmp_path, bad, gitattributes=False)
    (root / "weights/big.txt").write_text("a" * 10_000_001)  # text, but over the Hub's 10 MB
    problems = "\n".join(check_space(root, space_files(root)))
    for expected in ("python_version must be the string \"3.11\"", "sdk_version '6.0.0' differs from "
                     "requirements.txt's gradio==6.31.0", "suggested_hardware 'huge-gpu'", "neither models nor tags",
                     "app_file 'main.py'", "no license", "no .gitattributes", "3 binary or large"):
        assert expected in problems, problems
    assert "weights/big.txt" in problems and "weights/base/model.safetensors" in problems
    assert main(["deploy", "someone/muse", "--dry-run", "--root", str(root)]) == 1
    assert "would not build or push" in capsys.readouterr().err


def test_a_missing_front_matter_or_gradio_pin_is_named(tmp_path):
    root = make_checkout(tmp_path, "# no front matter\n")
    assert "no front matter" in check_space(root, space_files(root))[0]
    root = make_checkout(tmp_path / "b")
    (root / "requirements.txt").write_text("gradio>=6\n")
    assert any("does not pin gradio" in p for p in check_space(root, space_files(root)))
    (root / "README.md").write_text("---\nsdk: [gradio\n---\n")
    assert "not valid YAML" in check_space(root, space_files(root))[0]


def test_a_bad_space_id_is_a_usage_error(capsys):
    assert main(["deploy", "muse", "--dry-run"]) == 2
    assert main(["deploy", "me/not ok", "--dry-run"]) == 2
    assert "not a Space id of the form OWNER/NAME" in capsys.readouterr().err


# ----- the upload (a stand-in HfApi: no network) --------------------------------------------------------

class FakeApi:
    """Records what deploy and push_to_hub ask of huggingface_hub.HfApi."""

    calls: list = []
    remote = ["README.md", ".gitattributes", "old_app.py"]

    def __init__(self, token=None):
        self.calls.append(("init", token))

    def create_repo(self, repo_id, **kwargs):
        self.calls.append(("create_repo", repo_id, kwargs))
        return f"https://huggingface.co/spaces/{repo_id}"

    def list_repo_files(self, repo_id, **kwargs):
        return list(self.remote)

    def create_commit(self, repo_id, operations, **kwargs):
        self.calls.append(("create_commit", repo_id, list(operations), kwargs))

    def upload_folder(self, *, repo_id, folder_path, **kwargs):
        self.calls.append(("upload_folder", repo_id, {p.name: p.read_text() for p in Path(folder_path).iterdir()}))


@pytest.fixture
def fake_api(monkeypatch):
    import huggingface_hub

    FakeApi.calls = []
    monkeypatch.setattr(huggingface_hub, "HfApi", FakeApi)
    return FakeApi


def test_offline_the_deploy_says_it_needs_the_network(tmp_path, fake_api, monkeypatch, capsys):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert main(["deploy", "someone/muse", "--root", str(make_checkout(tmp_path))]) == 2
    assert "needs the network" in capsys.readouterr().err
    assert fake_api.calls == []


def test_the_deploy_uploads_exactly_the_file_set(tmp_path, fake_api, monkeypatch, capsys):
    from huggingface_hub import CommitOperationAdd, CommitOperationDelete

    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    root = make_checkout(tmp_path)
    assert main(["deploy", "someone/muse", "--token", "hf_x", "--root", str(root)]) == 0
    (_, token), (_, repo_id, create), (_, _, operations, commit) = fake_api.calls
    assert token == "hf_x" and repo_id == "someone/muse"
    assert create["repo_type"] == "space" and create["space_sdk"] == "gradio" and create["exist_ok"] is True
    assert commit["repo_type"] == "space"
    added = [op.path_in_repo for op in operations if isinstance(op, CommitOperationAdd)]
    assert added == [f.path for f in space_files(root)]
    assert [op.path_in_repo for op in operations if isinstance(op, CommitOperationDelete)] == ["old_app.py"]
    assert "deployed: https://huggingface.co/spaces/someone/muse" in capsys.readouterr().out


def test_push_to_hub_writes_a_model_card_unless_there_is_one(fake_api):
    from huggingface_hub import ModelCard

    def save(folder):
        Path(folder, "config.json").write_text("{}")

    push_folder_to_hub(save, "me/model", private=True, token=None, commit_message="m")
    files = fake_api.calls[-1][2]
    assert set(files) == {"config.json", "README.md"}
    card = ModelCard(files["README.md"])
    assert card.data.to_dict() == CARD_METADATA
    assert 'muse.load_pipeline("me/model")' in card.text and "CC-BY-4.0" in card.text

    def save_with_card(folder):
        save(folder)
        Path(folder, "README.md").write_text("own card")

    push_folder_to_hub(save_with_card, "me/model", private=True, token=None, commit_message="m")
    assert fake_api.calls[-1][2]["README.md"] == "own card"


def test_the_shipped_model_card_metadata():
    from huggingface_hub import ModelCard

    data = ModelCard.load(ROOT / "weights" / "README.md").data
    assert (data.license, data.pipeline_tag, data.library_name) == ("cc-by-4.0", "text-to-image", "muse")
    assert {"text-to-image", "maskgit"} <= set(data.tags)


# ----- the default weights of an installed wheel (no weights/ beside the package) -------------------------

def test_without_weights_beside_the_package_the_default_is_the_hub_repo(tmp_path, monkeypatch):
    monkeypatch.setattr(muse.loader, "DEFAULT_WEIGHTS", tmp_path / "weights")
    asked = []
    monkeypatch.setattr(muse.loader, "resolve_folder",
                        lambda source, local_only=False: asked.append((source, local_only)) or tmp_path)
    assert muse.loader.default_folder() == tmp_path
    assert muse.loader.local_folder(None) == tmp_path  # describe(None): the Hub cache only, no download
    assert asked == [(muse.loader.MUSE_DEFAULT_REPO, False), (muse.loader.MUSE_DEFAULT_REPO, True)]


def test_offline_without_weights_the_message_says_what_to_do(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(muse.loader, "DEFAULT_WEIGHTS", tmp_path / "weights")
    with pytest.raises(WeightsError, match=r"shipped model is missing.*installed package carries no weights.*"
                                           r"HF_HUB_OFFLINE is set.*Set MUSE_WEIGHTS") as err:
        muse.load_pipeline()
    assert muse.loader.MUSE_DEFAULT_REPO in str(err.value)


# ----- the Space as its builder makes it --------------------------------------------------------------------

NETWORK_ERROR = re.compile(r"NewConnectionError|Network is unreachable|Temporary failure in name resolution|"
                           r"Max retries exceeded|ConnectTimeout|ProxyError|No route to host|Name or service not known")


@pytest.fixture(scope="session")
def space_python() -> Path:
    """The python of a venv built from requirements.txt alone, as the Space builder builds one: once, then
    reused from the system temp folder under requirements.txt's hash. Skips when pip cannot reach an index."""
    requirements = ROOT / "requirements.txt"
    venv = Path(tempfile.gettempdir()) / f"muse-space-venv-{hashlib.sha256(requirements.read_bytes()).hexdigest()[:12]}"
    python, complete = venv / "bin" / "python", venv / ".complete"
    if complete.is_file():
        return python
    shutil.rmtree(venv, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    done = subprocess.run([str(python), "-m", "pip", "install", "-q", "-r", str(requirements)], capture_output=True,
                          text=True, timeout=1500)
    if done.returncode != 0:
        shutil.rmtree(venv, ignore_errors=True)
        output = done.stdout + done.stderr
        if NETWORK_ERROR.search(output):
            pytest.skip(f"pip cannot reach a package index to build the Space's venv: {output.strip()[-300:]}")
        pytest.fail(f"pip install -r requirements.txt failed in a clean venv:\n{output[-3000:]}")
    complete.touch()
    return python


@pytest.mark.slow
@pytest.mark.timeout(1800)  # the first run builds the venv (cached afterwards)
def test_the_space_runs_from_its_files_alone_in_a_clean_venv(space_python, tmp_path):
    from gradio_client import Client

    folder = tmp_path / "space"
    for file in space_files(ROOT):
        (folder / file.path).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / file.path, folder / file.path)
    env = {"PYTHONPATH": "", "MUSE_WEIGHTS": "", "HF_HUB_OFFLINE": "1"}  # the copied weights/, nothing from here
    where = subprocess.run([str(space_python), "-c", "import muse; print(muse.__file__)"], cwd=folder,
                           capture_output=True, text=True, timeout=120, env={**os.environ, **env})
    assert where.stdout.strip() == str(folder / "muse" / "__init__.py"), where.stderr
    with running_app(None, tmp_path / "app.log", timeout=300, env=env, python=space_python, cwd=folder) as live:
        client = Client(live.url, verbose=False, download_files=str(tmp_path / "downloads"))
        job = client.submit(prompt="red heart", timesteps=2, seed=1, randomize_seed=False, api_name="/generate")
        final = job.result(timeout=300)
    assert any(isinstance(v, str) and v.startswith("done") for v in final), final
    pngs = [v for v in final if isinstance(v, str) and v.endswith(".png")]
    assert pngs and all(Path(p).is_file() for p in pngs), final
