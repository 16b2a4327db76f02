"""Loading aMUSEd weights in diffusers layout, with muse's checks: safetensors only (never a pickle),
every config read and cross-checked before a model is built, every tensor matched by name and shape.

A folder (or Hub snapshot) holds:
    model_index.json
    vqvae/        config.json, diffusion_pytorch_model[.fp16].safetensors
    transformer/  config.json, diffusion_pytorch_model[.fp16].safetensors
    text_encoder/ config.json, model[.fp16].safetensors
    tokenizer/    vocab.json + merges.txt, or tokenizer.json (+ tokenizer_config.json)
    scheduler/    scheduler_config.json

The weights are not ours: amused/amused-256 and amused/amused-512 are under the OpenRAIL++-M licence,
and this repository never ships them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from ..hub import PathLike, WeightsError, check_safetensors_header, offline, read_json
from ..loader import PipelineConfig, PipelineSummary

MODEL_INDEX = "model_index.json"
LICENSE = "OpenRAIL++-M"
PUBLIC_MODELS = ("amused/amused-256", "amused/amused-512")
PIPELINE_CLASSES = ("AmusedPipeline", "AmusedInpaintPipeline", "AmusedImg2ImgPipeline")
# folder -> (library, accepted classes) as model_index.json names them
EXPECTED = {"vqvae": ("diffusers", ("VQModel",)), "transformer": ("diffusers", ("UVit2DModel",)),
            "text_encoder": ("transformers", ("CLIPTextModelWithProjection",)),
            "tokenizer": ("transformers", ("CLIPTokenizer", "CLIPTokenizerFast")),
            "scheduler": ("diffusers", ("AmusedScheduler",))}
WEIGHT_STEMS = {"vqvae": "diffusion_pytorch_model", "transformer": "diffusion_pytorch_model", "text_encoder": "model"}
CONFIG_FILES = {"vqvae": "config.json", "transformer": "config.json", "text_encoder": "config.json",
                "scheduler": "scheduler_config.json"}
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")
# aMUSEd's published sampling defaults (diffusers' AmusedPipeline.__call__ and AmusedScheduler): 12 steps,
# guidance 10, choice temperature linspace(2, 0), a plain multinomial draw (temperature 1, no top-k).
AMUSED_DEFAULTS: dict[str, Any] = {"timesteps": 12, "cond_scale": 10.0, "choice_temperature": 2.0, "temperature": 1.0,
                                   "topk_filter_thres": 0.0, "use_critic": False, "superres": False}
INSTALL_HINT = "install the optional extra: pip install -e '.[amused]' (diffusers; torch stays as it is)"


def is_amused_source(source: Optional[PathLike]) -> bool:
    """Whether `source` names aMUSEd weights: a local folder with a model_index.json, or a Hub id of the
    amused/ organisation (the only public weights of this family)."""
    if source is None:
        return False
    path = Path(source).expanduser()
    if path.is_dir():
        return (path / MODEL_INDEX).is_file()
    return not path.exists() and str(source).lower().startswith("amused/")


def allow_patterns(variant: Optional[str]) -> list[str]:
    """The files a Hub snapshot needs: configs, tokenizer files and one set of safetensors weights."""
    weights = f"*.{variant}.safetensors" if variant else "*/diffusion_pytorch_model.safetensors"
    extra = [] if variant else ["text_encoder/model.safetensors"]
    return [MODEL_INDEX, "*/config.json", "scheduler/scheduler_config.json", "tokenizer/*.json", "tokenizer/*.txt",
            "*.md", weights, *extra]


def resolve_amused(source: PathLike, revision: Optional[str] = None, variant: Optional[str] = None) -> Path:
    """A local folder for `source`: an existing folder, or a Hub id found in the cache (or fetched when
    the Hub is reachable). Offline and not cached: a WeightsError that says how to get it."""
    path = Path(source).expanduser()
    if path.exists():
        if not path.is_dir():
            raise WeightsError(f"{path} is a file; pass the aMUSEd folder that holds {MODEL_INDEX}")
        return path
    text = str(source)
    if text.count("/") != 1 or text.startswith((".", "/", "~")):
        raise WeightsError(f"no aMUSEd folder at {text!r}, and it is not a Hub repo id of the form 'owner/name'")
    how = (f"to fix it, on a machine that reaches the Hugging Face Hub run `hf download {text}` "
           f"(or huggingface-cli download {text}) and copy its cache to this one (HF_HOME), or save it with "
           f"`hf download {text} --local-dir FOLDER` and pass that FOLDER (or MUSE_WEIGHTS=FOLDER). Its weights "
           f"are under the {LICENSE} licence: read and accept it on the model's page; muse never ships them")
    try:
        from huggingface_hub import snapshot_download
        from huggingface_hub.errors import HFValidationError
    except ImportError as err:  # pragma: no cover - huggingface_hub is a runtime dependency
        raise WeightsError(f"huggingface_hub is needed to fetch {text!r}: {err}") from None
    try:
        local = snapshot_download(repo_id=text, revision=revision, allow_patterns=allow_patterns(variant),
                                  local_files_only=offline())
    except HFValidationError as err:
        raise WeightsError(f"{text!r} is not a valid Hub repo id: {err}") from None
    except Exception as err:  # offline cache miss, network, auth: all are "not available here"
        where = ("it is not in this machine's Hugging Face cache and HF_HUB_OFFLINE is set" if offline()
                 else f"the Hub could not be reached ({type(err).__name__})")
        raise WeightsError(f"cannot load aMUSEd model {text!r}: {where}; {how}") from None
    return Path(local)


def weight_file(folder: Path, component: str, variant: Optional[str]) -> Path:
    """The component's safetensors file: the plain one (variant None; the fp16 one when it is the only
    one) or the named variant's; refuses pickles with a message that says so."""
    stem, part = WEIGHT_STEMS[component], folder / component
    names = [f"{stem}.{variant}.safetensors"] if variant else [f"{stem}.safetensors", f"{stem}.fp16.safetensors"]
    for name in names:
        if (part / name).is_file():
            check_safetensors_header(part / name)
            return part / name
    pickles = sorted(p.name for p in part.glob("*") if p.suffix in PICKLE_SUFFIXES) if part.is_dir() else []
    extra = f" (found {pickles}: pickle formats are never loaded)" if pickles else ""
    raise WeightsError(f"missing {' or '.join(names)} in {part}{extra}")


def _int(config: dict[str, Any], key: str, where: str, lo: int = 1, hi: int = 1 << 20) -> int:
    value = config.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
        raise WeightsError(f"{where}: {key} must be an integer in [{lo}, {hi}], got {value!r}")
    return value


@dataclass(frozen=True)
class AmusedLayout:
    """A checked aMUSEd folder: its configs (validated and cross-checked) and weight files."""

    folder: Path
    configs: dict[str, dict[str, Any]]  # component -> config
    weights: dict[str, Path]  # component -> safetensors file

    @property
    def downsample(self) -> int:
        """Pixels per token side: 2 ** (number of VQ blocks - 1), as diffusers computes it."""
        return 2 ** (len(self.configs["vqvae"]["block_out_channels"]) - 1)

    @property
    def grid(self) -> int:
        """Tokens per side of the transformer's images."""
        return self.configs["transformer"]["sample_size"]

    @property
    def image_size(self) -> int:
        return self.grid * self.downsample


def check_layout(folder: Path, variant: Optional[str] = None) -> AmusedLayout:
    """Read and cross-check every config and find every weight file, before anything is built."""
    index = read_json(folder / MODEL_INDEX)
    if index.get("_class_name") not in PIPELINE_CLASSES:
        raise WeightsError(f"{folder / MODEL_INDEX} is not an aMUSEd pipeline: _class_name is "
                           f"{index.get('_class_name')!r}, expected one of {', '.join(PIPELINE_CLASSES)}")
    for name, (library, classes) in EXPECTED.items():
        entry = index.get(name)
        if not (isinstance(entry, list) and len(entry) == 2 and entry[0] == library and entry[1] in classes):
            raise WeightsError(f"{folder / MODEL_INDEX}: component {name} is {entry!r}, expected [{library!r}, "
                               f"{classes[0]!r}]")
    configs = {name: read_json(folder / name / file) for name, file in CONFIG_FILES.items()}
    for name in ("vqvae", "transformer", "scheduler"):
        expected = EXPECTED[name][1][0]
        if configs[name].get("_class_name") != expected:
            raise WeightsError(f"{folder / name}: _class_name is {configs[name].get('_class_name')!r}, expected {expected!r}")
    vq, tr, te, sc = (configs[k] for k in ("vqvae", "transformer", "text_encoder", "scheduler"))
    codes = _int(vq, "num_vq_embeddings", "vqvae")
    blocks = vq.get("block_out_channels")
    if not isinstance(blocks, list) or not 1 <= len(blocks) <= 8:
        raise WeightsError(f"vqvae: block_out_channels must be a list of 1 to 8 widths, got {blocks!r}")
    if vq.get("lookup_from_codebook") is not True:
        raise WeightsError("vqvae: lookup_from_codebook must be true (images are decoded from token ids)")
    problems = []
    if _int(tr, "codebook_size", "transformer") != codes:
        problems.append(f"transformer codebook_size {tr['codebook_size']} != vqvae num_vq_embeddings {codes}")
    mask_id = _int(sc, "mask_token_id", "scheduler", lo=0)
    if not codes <= mask_id < _int(tr, "vocab_size", "transformer"):
        problems.append(f"scheduler mask_token_id {mask_id} is not in [codebook_size {codes}, vocab_size {tr['vocab_size']})")
    if _int(tr, "encoder_hidden_size", "transformer") != _int(te, "hidden_size", "text_encoder"):
        problems.append(f"transformer encoder_hidden_size {tr['encoder_hidden_size']} != text encoder hidden_size {te['hidden_size']}")
    if _int(tr, "cond_embed_dim", "transformer") != _int(te, "projection_dim", "text_encoder"):
        problems.append(f"transformer cond_embed_dim {tr['cond_embed_dim']} != text encoder projection_dim {te['projection_dim']}")
    if _int(tr, "micro_cond_embed_dim", "transformer") != 5 * _int(tr, "micro_cond_encode_dim", "transformer"):
        problems.append("transformer micro_cond_embed_dim must be 5 x micro_cond_encode_dim (five micro-conditions)")
    if sc.get("masking_schedule", "cosine") not in ("cosine", "linear"):
        problems.append(f"scheduler masking_schedule {sc.get('masking_schedule')!r} is not cosine or linear")
    grid = _int(tr, "sample_size", "transformer", hi=1024)
    if tr.get("downsample") and grid % 2:
        problems.append(f"transformer sample_size {grid} must be even when it downsamples")
    if problems:
        raise WeightsError(f"{folder} does not fit together: " + "; ".join(problems))
    tokenizer = folder / "tokenizer"
    if not ((tokenizer / "tokenizer.json").is_file() or
            ((tokenizer / "vocab.json").is_file() and (tokenizer / "merges.txt").is_file())):
        raise WeightsError(f"{tokenizer} holds neither tokenizer.json nor vocab.json and merges.txt")
    weights = {name: weight_file(folder, name, variant) for name in WEIGHT_STEMS}
    return AmusedLayout(folder, configs, weights)


def require_diffusers() -> None:
    """diffusers is an optional extra, imported only for aMUSEd models."""
    try:
        import diffusers  # noqa: F401
    except ImportError:
        raise WeightsError(f"aMUSEd models need diffusers: {INSTALL_HINT}") from None


def pipeline_config(source: str, image_size: int, scheduler_config: dict[str, Any],
                    text_max_length: Optional[int] = None) -> PipelineConfig:
    """muse's description of an aMUSEd pipeline: one stage of `image_size` px, aMUSEd's defaults."""
    defaults = {**AMUSED_DEFAULTS, "schedule": scheduler_config.get("masking_schedule", "cosine")}
    return PipelineConfig(text_encoder=source, text_max_length=text_max_length, base_size=image_size,
                          superres_size=image_size, defaults=defaults)


def describe_amused(source: PathLike) -> PipelineSummary:
    """`muse.load.describe` for aMUSEd weights: sizes and defaults from the configs alone (a Hub id only
    from the local cache)."""
    layout = check_layout(resolve_amused(source, variant=None) if Path(source).expanduser().exists()
                          else _cached(source), variant=None)
    return PipelineSummary(pipeline_config(str(source), layout.image_size, layout.configs["scheduler"]),
                           layout.downsample, False)


def assumed_summary(source: PathLike) -> PipelineSummary:
    """What a UI may assume of aMUSEd weights it cannot read yet (a Hub id not in the local cache, before
    the first request fetches it): the published models' 16 px per token, 512 px when the name says
    so (amused/amused-512), else 256 px, and aMUSEd's defaults. Loading reads the real configs."""
    size = 512 if "512" in str(source).rsplit("/", 1)[-1] else 256
    return PipelineSummary(pipeline_config(str(source), size, {}), 16, False)


def _cached(source: PathLike) -> Path:
    """A Hub id's snapshot from the local cache only (describing must not download)."""
    previous = os.environ.get("HF_HUB_OFFLINE")
    os.environ["HF_HUB_OFFLINE"] = "1"
    try:
        return resolve_amused(source)
    finally:
        if previous is None:
            os.environ.pop("HF_HUB_OFFLINE")
        else:
            os.environ["HF_HUB_OFFLINE"] = previous
