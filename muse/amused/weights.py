"""aMUSEd's components in diffusers layout, read and written with muse's checks: safetensors only, every
tensor matched by name, shape and float-ness against the model before a weight is read
(`muse.amused.load` checks the folder's configs first)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from ..hub import PathLike, check_against_header, load_safetensors, strict_load
from .load import MODEL_INDEX, AmusedLayout

# Buffers older transformers versions saved with CLIP's weights and current ones rebuild: dropped on load.
LEGACY_BUFFERS = ("text_model.embeddings.position_ids",)


def strict_component(cls: type, config: Any, file: Path, where: str) -> torch.nn.Module:
    """Build `cls` from its config and load `file` strictly: names, shapes and float-ness checked against
    the file's header on the meta device first, NaN or infinite weights refused (muse.hub's checks).
    fp16 files are cast to the model's float32."""
    build = (lambda: cls.from_config(config)) if hasattr(cls, "from_config") else (lambda: cls(config))
    with torch.device("meta"):
        meta = build()
    check_against_header(meta, file, where, dropped=LEGACY_BUFFERS)
    state = load_safetensors(file)
    own = meta.state_dict()
    for k in LEGACY_BUFFERS:
        if k in state and k not in own:
            state.pop(k)
    model = build()
    strict_load(model, state, where)
    return model.eval()


def load_parts(layout: AmusedLayout) -> dict[str, Any]:
    """The checked folder's components, loaded from safetensors only: vqvae, transformer, text_encoder,
    tokenizer and scheduler_config, the keyword arguments of `muse.amused.AmusedPipeline`."""
    from diffusers import UVit2DModel, VQModel
    from transformers import CLIPTextConfig, CLIPTextModelWithProjection, CLIPTokenizer

    folder = layout.folder
    vqvae = strict_component(VQModel, layout.configs["vqvae"], layout.weights["vqvae"], str(folder / "vqvae"))
    transformer = strict_component(UVit2DModel, layout.configs["transformer"], layout.weights["transformer"],
                                   str(folder / "transformer"))
    text_config = CLIPTextConfig.from_dict(layout.configs["text_encoder"])
    text_encoder = strict_component(CLIPTextModelWithProjection, text_config, layout.weights["text_encoder"],
                                    str(folder / "text_encoder"))
    tokenizer = CLIPTokenizer.from_pretrained(str(folder / "tokenizer"))
    return {"vqvae": vqvae, "transformer": transformer, "text_encoder": text_encoder, "tokenizer": tokenizer,
            "scheduler_config": layout.configs["scheduler"]}


def save_layout(folder: PathLike, vqvae: torch.nn.Module, transformer: torch.nn.Module, text_encoder: torch.nn.Module,
                tokenizer: Any, scheduler_config: dict[str, Any]) -> Path:
    """Write components in diffusers layout, safetensors only (float32 as stored in memory)."""
    import diffusers

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    vqvae.save_pretrained(folder / "vqvae", safe_serialization=True)
    transformer.save_pretrained(folder / "transformer", safe_serialization=True)
    text_encoder.save_pretrained(folder / "text_encoder", safe_serialization=True)
    if tokenizer is not None:  # None: the caller wrote the tokenizer files
        tokenizer.save_pretrained(folder / "tokenizer")
    (folder / "scheduler").mkdir(exist_ok=True)
    scheduler = {"_class_name": "AmusedScheduler", "_diffusers_version": diffusers.__version__,
                 **{k: v for k, v in scheduler_config.items() if not k.startswith("_")}}
    (folder / "scheduler" / "scheduler_config.json").write_text(json.dumps(scheduler, indent=2) + "\n")
    index = {"_class_name": "AmusedPipeline", "_diffusers_version": diffusers.__version__,
             "scheduler": ["diffusers", "AmusedScheduler"], "text_encoder": ["transformers", "CLIPTextModelWithProjection"],
             "tokenizer": ["transformers", "CLIPTokenizer"], "transformer": ["diffusers", "UVit2DModel"],
             "vqvae": ["diffusers", "VQModel"]}
    (folder / MODEL_INDEX).write_text(json.dumps(index, indent=2) + "\n")
    return folder
