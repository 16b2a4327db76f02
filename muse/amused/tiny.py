"""A tiny random aMUSEd in diffusers layout, made offline, for tests and timings.

The layer sizes are diffusers' own fast-test sizes (tests/pipelines/amused: hidden 8, codebook 8,
vocab 32, mask id 31, one VQ block so 1 px per token, a one-layer CLIP text encoder of width 8); the
token grid is `grid` x `grid`. The CLIP tokenizer is byte-level BPE over the 256 byte symbols and a few
merges, written as vocab.json + merges.txt like the public repositories' tokenizer folders.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from ..hub import PathLike
from .weights import save_layout

TINY_MERGES = [("t", "h"), ("th", "e</w>"), ("a", "n"), ("an", "d</w>"), ("o", "f</w>"), ("i", "n")]


def byte_symbols() -> list[str]:
    """GPT-2 / CLIP's printable stand-ins for the 256 bytes, in byte order."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + \
        list(range(ord("®"), ord("ÿ") + 1))
    symbols, extra = {}, 0
    for b in range(256):
        if b in printable:
            symbols[b] = chr(b)
        else:
            symbols[b] = chr(256 + extra)
            extra += 1
    return [symbols[b] for b in range(256)]


def write_tiny_tokenizer(folder: Path, max_length: int = 77) -> None:
    """vocab.json (specials, 256 byte symbols, their end-of-word forms, the merges) and merges.txt."""
    folder.mkdir(parents=True, exist_ok=True)
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for suffix in ("", "</w>"):
        for symbol in byte_symbols():
            vocab[symbol + suffix] = len(vocab)
    for a, b in TINY_MERGES:
        vocab.setdefault(a + b, len(vocab))
    (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False))
    (folder / "merges.txt").write_text("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in TINY_MERGES))
    config = {"tokenizer_class": "CLIPTokenizer", "model_max_length": max_length, "bos_token": "<|startoftext|>",
              "eos_token": "<|endoftext|>", "unk_token": "<|endoftext|>", "pad_token": "<|endoftext|>"}
    (folder / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n")


def make_tiny_amused(folder: PathLike, seed: int = 0, grid: int = 8) -> Path:
    """Build the tiny random aMUSEd (weights from torch.manual_seed(seed), as diffusers' tests do) and save
    it in diffusers layout, safetensors only; returns the folder."""
    from diffusers import AmusedScheduler, UVit2DModel, VQModel
    from transformers import CLIPTextConfig, CLIPTextModelWithProjection

    folder = Path(folder)
    torch.manual_seed(seed)  # diffusers' fast tests seed the global generator before each component
    transformer = UVit2DModel(hidden_size=8, use_bias=False, hidden_dropout=0.0, cond_embed_dim=8,
                              micro_cond_encode_dim=2, micro_cond_embed_dim=10, encoder_hidden_size=8, vocab_size=32,
                              codebook_size=8, in_channels=8, block_out_channels=8, num_res_blocks=1, downsample=True,
                              upsample=True, block_num_heads=1, num_hidden_layers=1, num_attention_heads=1,
                              attention_dropout=0.0, intermediate_size=8, layer_norm_eps=1e-06,
                              ln_elementwise_affine=True, sample_size=grid)
    scheduler = AmusedScheduler(mask_token_id=31)
    torch.manual_seed(seed)
    vqvae = VQModel(act_fn="silu", block_out_channels=[8], down_block_types=["DownEncoderBlock2D"], in_channels=3,
                    latent_channels=8, layers_per_block=1, norm_num_groups=8, num_vq_embeddings=8, out_channels=3,
                    sample_size=8, up_block_types=["UpDecoderBlock2D"], mid_block_add_attention=False,
                    lookup_from_codebook=True)
    torch.manual_seed(seed)
    text_config = CLIPTextConfig(bos_token_id=0, eos_token_id=2, hidden_size=8, intermediate_size=8,
                                 layer_norm_eps=1e-05, num_attention_heads=1, num_hidden_layers=1, pad_token_id=1,
                                 vocab_size=1000, projection_dim=8)
    text_encoder = CLIPTextModelWithProjection(text_config)
    write_tiny_tokenizer(folder / "tokenizer")  # the public repositories' files, not the library's tokenizer.json
    return save_layout(folder, vqvae, transformer, text_encoder, None, dict(scheduler.config))
