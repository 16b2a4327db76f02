"""The layout of a run folder, in one place. Every stage reads the earlier stages' results from it:

  run/run.json                    preset, dataset and text encoder the run was started with
  run/captions.safetensors        the encoded caption bank (`CaptionBank`), shared by the transformer stages
  run/tokens.safetensors          every image's token ids at 32 and 64 px (`tokenize`)
  run/<stage>/checkpoint/         model/ (config.json + model.safetensors), optimizer.*, state.json,
                                  ema/ (the weights' moving average, when the stage keeps one)
  run/<stage>/metrics.jsonl       loss.png    STOP (touch it to end the stage early)

A save writes checkpoint.tmp, then renames checkpoint to checkpoint.old and checkpoint.tmp to checkpoint.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

# every stage folder a run can have, in training order
EMA_DIR = "ema"  # a checkpoint's moving average of the weights, when the stage keeps one (`loop.EMA`)

STAGES = ("tokenizer", "tokenizer_decoder", "base", "superres", "base_critic", "superres_critic", "preview")


def staging_folder(folder: Path) -> Path:
    """Where a save writes the new checkpoint before swapping it in."""
    return folder.with_name(folder.name + ".tmp")


def previous_folder(folder: Path) -> Path:
    """Where a save moves the previous checkpoint while it swaps the new one in."""
    return folder.with_name(folder.name + ".old")


def checkpoint_folder(folder: Path) -> Path:
    """`folder`, or the previous checkpoint a save interrupted between its two renames left as `.old`."""
    old = previous_folder(folder)
    return old if not folder.is_dir() and old.is_dir() else folder


@dataclass(frozen=True)
class StageFolder:
    """One stage's folder inside a run (or any folder the training loop is given)."""

    root: Path

    @property
    def checkpoint(self) -> Path:
        """Where saves write the checkpoint."""
        return self.root / "checkpoint"

    def latest(self) -> Path:
        """The last whole checkpoint, where loads read it: `checkpoint`, or `checkpoint.old`."""
        return checkpoint_folder(self.checkpoint)

    def model(self) -> Path:
        """The latest checkpoint's weights to use (config.json + model.safetensors): the moving average
        when the stage keeps one, else the trained weights themselves."""
        ema = self.latest() / EMA_DIR
        return ema if (ema / "model.safetensors").is_file() else self.latest() / "model"

    def has_model(self) -> bool:
        return self.model().is_dir()

    @property
    def metrics(self) -> Path:
        return self.root / "metrics.jsonl"

    @property
    def loss_plot(self) -> Path:
        return self.root / "loss.png"

    @property
    def stop(self) -> Path:
        return self.root / "STOP"


@dataclass(frozen=True)
class RunFolder:
    """A run folder: the files shared by its stages, and each stage's folder."""

    root: Path

    @property
    def spec(self) -> Path:
        return self.root / "run.json"

    @property
    def captions(self) -> Path:
        return self.root / "captions.safetensors"

    @property
    def tokens(self) -> Path:
        return self.root / "tokens.safetensors"

    def stage(self, name: str) -> StageFolder:
        return StageFolder(self.root / name)
