"""Loading a pipeline folder (or Hub repo): its pipeline.json, its components, and the checks that
they fit together, before anything runs. Every problem is a `WeightsError` that says what to fix."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Union

import torch

from .config import VQConfig
from .hub import MAX_CONFIG_BYTES, PathLike, WeightsError, read_config, resolve_folder
from .preview import PreviewDecoder
from .settings import GenerationSettings, known_settings
from .text import DEFAULT_TEXT_ENCODER
from .transformer import MaskedTransformer
from .vq import VQModel

PIPELINE_NAME = "pipeline.json"
DEFAULT_WEIGHTS = Path(__file__).resolve().parent.parent / "weights"
# The shipped weights on the Hub: the default model where no weights/ lies beside the package (an
# installed wheel carries none). Published from this repository's weights/ folder, model card included.
MUSE_DEFAULT_REPO = "muse-maskgit/muse-emoji"
# folder name -> component class
COMPONENTS: dict[str, type] = {"vq": VQModel, "base": MaskedTransformer, "base_critic": MaskedTransformer,
                               "superres": MaskedTransformer, "superres_critic": MaskedTransformer,
                               "preview": PreviewDecoder}


@dataclass
class PipelineConfig:
    """Stored as weights/pipeline.json."""

    text_encoder: str = DEFAULT_TEXT_ENCODER
    text_max_length: Optional[int] = None
    base_size: int = 32
    superres_size: int = 64
    defaults: dict[str, Any] = field(default_factory=dict)  # generation defaults tuned for these weights

    def __post_init__(self) -> None:  # the file may come from an untrusted folder or repo
        if not isinstance(self.text_encoder, str) or not 0 < len(self.text_encoder) <= 1000:
            raise ValueError(f"text_encoder must be a Hub id or folder name, got {self.text_encoder!r}")
        if self.text_max_length is not None and (not isinstance(self.text_max_length, int)
                                                 or isinstance(self.text_max_length, bool)
                                                 or not 1 <= self.text_max_length <= 8192):
            raise ValueError(f"text_max_length must be null or an integer in [1, 8192], got {self.text_max_length!r}")
        for name in ("base_size", "superres_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or not 4 <= value <= 4096:
                raise ValueError(f"{name} must be an integer in [4, 4096], got {value!r}")
        if not isinstance(self.defaults, dict):
            raise ValueError(f"defaults must be a JSON object, got {self.defaults!r}")
        GenerationSettings(**known_settings(self.defaults))  # raises if out of range


def check_device(device: Union[str, torch.device, None]) -> torch.device:
    """The device to run on (None: CUDA when present, else CPU); a clear error for one that is not here."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"unknown device {device!r}; use 'cpu', 'cuda' or 'cuda:N'") from None
    available = {"cpu": True, "cuda": torch.cuda.is_available(),
                 "mps": bool(getattr(torch.backends, "mps", None)) and torch.backends.mps.is_available()}
    if not available.get(device.type, True):
        raise ValueError(f"device {str(device)!r} is not available on this machine")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise ValueError(f"device {str(device)!r} does not exist (this machine has {torch.cuda.device_count()} GPUs)")
    return device


def default_folder(download: bool = True) -> Path:
    """The shipped weights: `weights/` beside the package in a checkout, else MUSE_DEFAULT_REPO from the
    Hub (from its local cache alone when `download` is False or HF_HUB_OFFLINE is set)."""
    if (DEFAULT_WEIGHTS / PIPELINE_NAME).is_file():
        return DEFAULT_WEIGHTS
    try:
        return resolve_folder(MUSE_DEFAULT_REPO, local_only=not download)
    except WeightsError as err:
        raise WeightsError(f"the shipped model is missing: there is no {DEFAULT_WEIGHTS / PIPELINE_NAME} (an "
                           f"installed package carries no weights), and {err}. Set MUSE_WEIGHTS (or pass a source) "
                           f"to a model folder or Hub repo id, or go online to fetch {MUSE_DEFAULT_REPO}") from None


def local_folder(source: Optional[PathLike]) -> Path:
    """The shipped weights (None) or a local folder, without touching the network."""
    return Path(source).expanduser() if source else default_folder(download=False)


def read_pipeline_config(folder: Path) -> PipelineConfig:
    """The folder's validated pipeline.json."""
    spec = folder / PIPELINE_NAME
    if not spec.is_file():
        if folder == DEFAULT_WEIGHTS:
            raise WeightsError(f"the shipped model is missing: no {PIPELINE_NAME} in {DEFAULT_WEIGHTS}")
        raise WeightsError(f"{folder} is not a muse pipeline: missing {PIPELINE_NAME}")
    if spec.stat().st_size > MAX_CONFIG_BYTES:
        raise WeightsError(f"{spec} is implausibly large for a pipeline config")
    try:
        raw = json.loads(spec.read_text(encoding="utf-8"))
        if not isinstance(raw, dict):
            raise TypeError("it must hold a JSON object")
        return PipelineConfig(**raw)
    except (json.JSONDecodeError, TypeError, ValueError, UnicodeDecodeError) as err:
        raise WeightsError(f"{spec} is not a valid pipeline config: {err}") from None


@dataclass(frozen=True)
class PipelineSummary:
    """What a pipeline folder's configs say about it, read without loading a weight (so a UI can show
    defaults and token counts before its first request)."""

    config: PipelineConfig
    downsample: int  # the tokenizer's pixels per token side
    has_superres: bool

    def stage_names(self, superres: bool = True) -> list[str]:
        """The stages text to image runs: base, then super-res when asked for and present."""
        return ["base", "superres"] if superres and self.has_superres else ["base"]

    def image_size(self, stage: str) -> int:
        """Side in pixels of a stage's images."""
        return self.config.superres_size if stage == "superres" else self.config.base_size

    def output_size(self, superres: bool = True) -> int:
        """Side in pixels of the images text to image and inpainting return."""
        return self.image_size(self.stage_names(superres)[-1])

    def token_counts(self, superres: bool = True) -> dict[str, int]:
        """Tokens each stage of text to image generates, by stage name."""
        return {name: (self.image_size(name) // self.downsample) ** 2 for name in self.stage_names(superres)}


def describe_muse(source: Optional[PathLike]) -> PipelineSummary:
    """The shipped weights (None) or a local MUSE folder, from its validated pipeline.json and tokenizer
    config.json alone; a WeightsError when they are missing or invalid (a Hub id is not fetched).
    `muse.load.describe` picks this or aMUSEd's."""
    folder = local_folder(source)
    config = read_pipeline_config(folder)
    return PipelineSummary(config, read_config(folder / "vq", VQConfig).downsample, (folder / "superres").is_dir())


def save_pipeline_config(config: PipelineConfig, folder: Path) -> None:
    (folder / PIPELINE_NAME).write_text(json.dumps(dataclasses.asdict(config), indent=2) + "\n")


def load_components(source: Optional[PathLike], revision: Optional[str] = None) -> tuple[PipelineConfig, dict[str, Any]]:
    """The config and the components (folder name -> model) of the shipped weights (None: see
    `default_folder`), a folder or a Hub repo id."""
    folder = default_folder() if source is None else resolve_folder(source, revision=revision)
    config = read_pipeline_config(folder)
    parts = {name: cls.from_pretrained(folder / name) for name, cls in COMPONENTS.items() if (folder / name).is_dir()}
    for required in ("vq", "base"):
        if required not in parts:
            raise WeightsError(f"{folder} has no {required}/ component")
    return config, parts


def check_compatible(config: PipelineConfig, text_dim: int, vq: VQModel, base: MaskedTransformer,
                     superres: Optional[MaskedTransformer] = None, base_critic: Optional[MaskedTransformer] = None,
                     superres_critic: Optional[MaskedTransformer] = None,
                     preview: Optional[PreviewDecoder] = None) -> None:
    """A WeightsError naming every way a component does not fit the tokenizer, the sizes or the text encoder."""
    f, k = vq.config.downsample, vq.codebook_size
    if preview is not None and (preview.config.code_dim != vq.config.code_dim or preview.config.downsample != f):
        raise WeightsError(f"preview decoder (code_dim {preview.config.code_dim}, downsample "
                           f"{preview.config.downsample}) does not fit the tokenizer (code_dim {vq.config.code_dim}, "
                           f"downsample {f})")
    stages = [("base", base, config.base_size, 0), ("base_critic", base_critic, config.base_size, 0)]
    if superres is not None:
        cond = (config.base_size // f) ** 2
        stages += [("superres", superres, config.superres_size, cond),
                   ("superres_critic", superres_critic, config.superres_size, cond)]
    for name, model, size, cond in stages:
        if model is None:
            continue
        c = model.config
        problems = []
        if c.num_tokens != k:
            problems.append(f"num_tokens {c.num_tokens} != codebook size {k}")
        if c.seq_len != (size // f) ** 2:
            problems.append(f"seq_len {c.seq_len} != ({size}/{f})**2")
        if c.cond_seq_len != cond:
            problems.append(f"cond_seq_len {c.cond_seq_len} != {cond}")
        if c.text_dim != text_dim:
            problems.append(f"text_dim {c.text_dim} != text encoder width {text_dim}")
        critic = name.endswith("critic")
        if critic and c.kind != "critic":
            problems.append("is not a critic")
        if not critic and c.kind != "generator":
            problems.append("is not a generator")
        if problems:
            raise WeightsError(f"{name} does not fit this pipeline: " + "; ".join(problems))
