"""Weights I/O: config.json + model.safetensors per component, from a folder or a Hub repo.

Only safetensors are ever read (never a pickle: no `torch.load` of a file someone handed over).
A config is validated before the model is allocated, and every tensor must match the model's
own names and shapes: a mismatch fails loudly instead of loading part of a model.
"""

from __future__ import annotations

import json
import os
import struct
import tempfile
from pathlib import Path
from typing import Any, Optional, Sequence, Union

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .config import ConfigError, config_from_dict, config_to_dict

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
CARD_NAME = "README.md"
# Model card metadata of muse weights (the Hub reads it from README.md's front matter). The licence is the
# stricter of the shipped model's data licences: Twemoji images CC-BY-4.0 (attribution), Noto Apache-2.0.
CARD_METADATA: dict[str, Any] = {"license": "cc-by-4.0", "library_name": "muse", "pipeline_tag": "text-to-image",
                                 "tags": ["text-to-image", "maskgit", "muse", "emoji"]}
PathLike = Union[str, os.PathLike]
MAX_CONFIG_BYTES = 1 << 20
MAX_HEADER_BYTES = 100 << 20  # the safetensors library's own limit


class WeightsError(ValueError):
    """Weights that cannot be loaded safely and completely."""


def offline() -> bool:
    """Whether HF_HUB_OFFLINE forbids the network (the Makefile and the tests set it)."""
    return os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes", "on")


def resolve_folder(source: PathLike, subfolder: Optional[str] = None, revision: Optional[str] = None,
                   local_only: bool = False) -> Path:
    """A local folder for `source`: an existing path, or a Hub repo id fetched (or found in cache; only
    there when `local_only` or HF_HUB_OFFLINE is set)."""
    path = Path(source).expanduser()
    if path.exists():
        if not path.is_dir():
            raise WeightsError(f"{path} is a file; pass the folder that holds {CONFIG_NAME} and {WEIGHTS_NAME}")
        return path / subfolder if subfolder else path
    text = str(source)
    if text.count("/") != 1 or text.startswith((".", "/", "~")):
        raise WeightsError(f"no model folder at {text!r}, and it is not a Hub repo id of the form 'owner/name'")
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HFValidationError

    patterns = ["*.json", "*.safetensors", "*.md"]
    try:
        local = snapshot_download(repo_id=text, revision=revision, allow_patterns=patterns,
                                  local_files_only=local_only or offline())
    except HFValidationError as err:
        raise WeightsError(f"{text!r} is not a valid Hub repo id: {err}") from None
    except Exception as err:  # network, auth, offline cache miss: all are "not available here"
        hint = (" (HF_HUB_OFFLINE is set and it is not in the local cache)" if offline()
                else " (it is not in the local cache)" if local_only else "")
        raise WeightsError(f"could not get model {text!r} from the Hugging Face Hub{hint}: {type(err).__name__}: {err}") from None
    return Path(local) / subfolder if subfolder else Path(local)


def read_json(file: Path) -> dict[str, Any]:
    """A config file as a JSON object, size-checked before it is read; a WeightsError otherwise."""
    if not file.is_file():
        raise WeightsError(f"missing {file.name} in {file.parent}")
    if file.stat().st_size > MAX_CONFIG_BYTES:
        raise WeightsError(f"{file} is implausibly large for a config")
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise WeightsError(f"{file} is not valid JSON: {err}") from None
    if not isinstance(data, dict):
        raise WeightsError(f"{file} must hold a JSON object")
    return data


def read_config(folder: Path, expected: type) -> Any:
    file = folder / CONFIG_NAME
    data = read_json(file)
    try:
        return config_from_dict(data, expected)
    except ConfigError as err:
        raise WeightsError(f"{file}: {err}") from None


def check_safetensors_header(file: Path) -> None:
    """Refuse anything that is not a safetensors file before a library parses it."""
    if not file.is_file():
        other = sorted(p.name for p in file.parent.glob("*") if p.suffix in (".bin", ".pt", ".pth", ".ckpt", ".pkl"))
        extra = f" (found {other}: pickle formats are never loaded)" if other else ""
        raise WeightsError(f"missing {file.name} in {file.parent}{extra}")
    size = file.stat().st_size
    with open(file, "rb") as handle:
        head = handle.read(9)
    if head[:2] == b"PK" or head[:1] == b"\x80":
        raise WeightsError(f"{file} is a pickle / torch.save file; muse only reads safetensors, never pickles")
    if len(head) < 9:
        raise WeightsError(f"{file} is not a safetensors file (only {size} bytes)")
    (header_len,) = struct.unpack("<Q", head[:8])
    if head[8:9] != b"{" or header_len + 8 > size:
        raise WeightsError(f"{file} is not a valid safetensors file (bad or truncated header)")


SAFETENSORS_FLOAT = {"F64", "F32", "F16", "BF16", "F8_E4M3", "F8_E5M2"}


def read_safetensors_header(file: Path) -> dict[str, tuple[str, tuple[int, ...]]]:
    """{tensor name: (dtype, shape)} from a safetensors header, without reading the tensors."""
    check_safetensors_header(file)
    with open(file, "rb") as handle:
        (header_len,) = struct.unpack("<Q", handle.read(8))
        if header_len > MAX_HEADER_BYTES:
            raise WeightsError(f"{file} has an implausibly large safetensors header ({header_len:,} bytes)")
        try:
            header = json.loads(handle.read(header_len).decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise WeightsError(f"{file} is not a valid safetensors file (unreadable header)") from None
    if not isinstance(header, dict):
        raise WeightsError(f"{file} is not a valid safetensors file (the header is not an object)")
    out = {}
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        if not isinstance(entry, dict) or not isinstance(entry.get("shape"), list) or "dtype" not in entry:
            raise WeightsError(f"{file} is not a valid safetensors file (entry {name!r})")
        out[name] = (str(entry["dtype"]), tuple(entry["shape"]))
    return out


def check_against_header(model: torch.nn.Module, file: Path, where: str, dropped: Sequence[str] = ()) -> None:
    """Compare a model built on the meta device (no memory) with a file's header: names, shapes and
    float-ness must match before anything is read or allocated. `dropped`: tensors a file may hold that
    the model no longer has (the loader drops them), not counted as unexpected."""
    own = model.state_dict()
    header = {k: v for k, v in read_safetensors_header(file).items() if k in own or k not in dropped}
    wrong = [f"{k}: file {header[k][1]} vs model {tuple(own[k].shape)}"
             for k in sorted(set(own) & set(header)) if header[k][1] != tuple(own[k].shape)]
    wrong += [f"{k}: file {header[k][0]} vs model {own[k].dtype}" for k in sorted(set(own) & set(header))
              if own[k].is_floating_point() != (header[k][0] in SAFETENSORS_FLOAT)]
    _raise_mismatch(sorted(set(own) - set(header)), sorted(set(header) - set(own)), wrong, where)


def _raise_mismatch(missing: list[str], unexpected: list[str], wrong: list[str], where: str) -> None:
    if missing or unexpected or wrong:
        parts = [f"missing {missing[:8]}" if missing else "", f"unexpected {unexpected[:8]}" if unexpected else "",
                 f"wrong shapes or dtypes {wrong[:8]}" if wrong else ""]
        raise WeightsError(f"weights in {where} do not match its config: " + "; ".join(p for p in parts if p))


def load_safetensors(file: Path) -> dict[str, torch.Tensor]:
    """Read a safetensors file on the CPU, with a clear error for anything else."""
    check_safetensors_header(file)
    try:
        return load_file(str(file), device="cpu")
    except (SafetensorError, OSError, ValueError, RuntimeError) as err:
        raise WeightsError(f"{file} could not be read as safetensors (truncated or corrupt?): {err}") from None


def strict_load(module: torch.nn.Module, state: dict[str, torch.Tensor], where: str) -> None:
    """load_state_dict that lists every missing, unexpected and wrong-shape tensor, and refuses
    NaN or infinite weights (they would only show up later as a silently broken image)."""
    own = module.state_dict()
    wrong = [f"{k}: file {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
             for k in sorted(set(own) & set(state)) if state[k].shape != own[k].shape]
    wrong += [f"{k}: file {state[k].dtype} vs model {own[k].dtype}" for k in sorted(set(own) & set(state))
              if own[k].is_floating_point() != state[k].is_floating_point()]
    _raise_mismatch(sorted(set(own) - set(state)), sorted(set(state) - set(own)), wrong, where)
    bad = [k for k, v in state.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if bad:
        raise WeightsError(f"weights in {where} hold NaN or infinite values in {bad[:8]}")
    module.load_state_dict(state, strict=True)


class PretrainedMixin:
    """save_pretrained / from_pretrained / push_to_hub for a module with a dataclass `config`."""

    config_class: type

    def save_pretrained(self, folder: PathLike) -> Path:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / CONFIG_NAME).write_text(json.dumps(config_to_dict(self.config), indent=2) + "\n")
        # Stored in float32 whatever the module runs in (inference may cast to bfloat16).
        state = {k: (v.detach().float() if v.is_floating_point() else v.detach()).contiguous().cpu()
                 for k, v in self.state_dict().items()}
        save_file(state, str(folder / WEIGHTS_NAME), metadata={"format": "pt", "muse": type(self).__name__})
        return folder

    @classmethod
    def from_pretrained(cls, source: PathLike, subfolder: Optional[str] = None, revision: Optional[str] = None,
                        device: Union[str, torch.device] = "cpu"):
        folder = resolve_folder(source, subfolder, revision)
        config = read_config(folder, cls.config_class)  # validated before any allocation
        with torch.device("meta"):  # the model's names and shapes, without memory
            check_against_header(cls(config), folder / WEIGHTS_NAME, str(folder))
        state = load_safetensors(folder / WEIGHTS_NAME)
        model = cls(config)
        strict_load(model, state, str(folder))
        return model.to(device).eval()

    def push_to_hub(self, repo_id: str, *, private: bool = True, token: Optional[str] = None,
                    commit_message: str = "Upload muse component") -> str:
        cls = type(self)
        return push_folder_to_hub(self.save_pretrained, repo_id, private=private, token=token,
                                  commit_message=commit_message,
                                  load_with=f"{cls.__module__}.{cls.__qualname__}.from_pretrained")


def write_model_card(folder: Path, repo_id: str, load_with: str = "muse.load_pipeline") -> Path:
    """`folder`/README.md: a model card with CARD_METADATA and how to load the weights, unless the folder
    has a card already (that one is kept as it is)."""
    from huggingface_hub import ModelCard, ModelCardData

    file = Path(folder) / CARD_NAME
    if file.exists():
        return file
    body = (f"# {repo_id}\n\n"
            "Weights for muse (MUSE / MaskGIT text to image; Python distribution `muse-maskgit-playground`): "
            "`config.json` + `model.safetensors` per component.\n\n"
            f"```python\nimport muse\n\nmodel = {load_with}(\"{repo_id}\")\n```\n\n"
            "## Licence\n\n"
            "CC-BY-4.0, the terms of the data muse's emoji model is trained on: Twemoji images (CC-BY-4.0, "
            "Copyright Twitter, Inc and other contributors) and Noto Emoji images (Apache-2.0, Google). "
            "Weights trained on other data: set the licence that data allows.\n")
    ModelCard(f"---\n{ModelCardData(**CARD_METADATA).to_yaml()}\n---\n\n{body}").save(file)
    return file


def push_folder_to_hub(save_fn, repo_id: str, *, private: bool, token: Optional[str], commit_message: str,
                       load_with: str = "muse.load_pipeline") -> str:
    """Save with `save_fn(folder)` into a temporary folder, add a model card if it wrote none (see
    `write_model_card`), and upload it; returns the repo URL."""
    from huggingface_hub import HfApi

    api = HfApi(token=token)
    url = api.create_repo(repo_id, private=private, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        save_fn(tmp)
        write_model_card(Path(tmp), repo_id, load_with)
        api.upload_folder(repo_id=repo_id, folder_path=tmp, commit_message=commit_message)
    return str(url)
