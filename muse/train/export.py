"""Export: a run folder's latest checkpoints as a pipeline folder (what `load_pipeline` reads), and
each stage's progress for the model card."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Optional

from ..pipeline import MusePipeline, PipelineConfig
from ..presets import BASE_SIZE, SUPERRES_SIZE
from ..preview import PreviewDecoder
from ..text import DEFAULT_TEXT_ENCODER
from ..transformer import MaskedTransformer
from .paths import STAGES, RunFolder
from .stages import model_from_run, run_tokenizer

# the optional components an exported pipeline takes from the run when their stage has trained
OPTIONAL = {"superres": MaskedTransformer, "base_critic": MaskedTransformer, "superres_critic": MaskedTransformer,
            "preview": PreviewDecoder}


def export(run: Path, out: Path, text_encoder: str = DEFAULT_TEXT_ENCODER, defaults: Optional[dict] = None) -> Path:
    """Write a pipeline folder from a run's latest checkpoints; `text_encoder` is the name recorded in
    pipeline.json (the encoder itself is not loaded)."""
    folder = RunFolder(run)
    parts = {name: model_from_run(run, name, cls) for name, cls in OPTIONAL.items() if folder.stage(name).has_model()}
    base = model_from_run(run, "base")
    config = PipelineConfig(text_encoder=text_encoder, base_size=BASE_SIZE, superres_size=SUPERRES_SIZE,
                            defaults=defaults or {})
    # Only the text encoder's width matters for the compatibility check; no need to load it here.
    stand_in = SimpleNamespace(dim=base.config.text_dim)
    pipe = MusePipeline(run_tokenizer(run), base, stand_in, parts.get("superres"), parts.get("base_critic"),
                        parts.get("superres_critic"), config, preview=parts.get("preview"))
    pipe.save_pretrained(out)
    return out


def stage_summary(run: Path) -> dict:
    """Steps, training time and last metrics of each stage in a run (for the model card)."""
    summary = {}
    for name in STAGES:
        stage = RunFolder(run).stage(name)
        state = stage.latest() / "state.json"
        if state.is_file():
            metrics = stage.metrics
            last = metrics.read_text().splitlines()[-1] if metrics.is_file() and metrics.stat().st_size else "{}"
            summary[name] = {**json.loads(state.read_text()), "last": json.loads(last)}
    return summary
