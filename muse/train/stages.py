"""The training stages: tokenizer (and its decoder fine-tune), token ids, base, super-res, critics, preview.

Each stage reads the dataset and the earlier stages' results from one run folder (`paths.RunFolder`
has the layout) and trains with `loop.train_loop`, which resumes from the stage's checkpoint.
"""

from __future__ import annotations

import itertools
import json
import shutil
from dataclasses import dataclass
from functools import cache, partial
from pathlib import Path
from typing import Optional

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn

from ..data import CaptionedImages, load_dataset
from ..data.captions import DEFAULT_RECIPE
from ..hub import read_config
from ..presets import SUPERRES_SIZE, make_preset
from ..preview import PreviewConfig, PreviewDecoder, distill_loss
from ..text import DEFAULT_TEXT_ENCODER, TextEncoder
from ..transformer import MaskedTransformer
from ..vq import VQModel
from .captions import CaptionBank
from .loop import LoopConfig, init_distributed, train_loop
from .losses import critic_loss, maskgit_loss, vq_loss
from .paths import RunFolder
from .validate import build_validation
from .validate import validate as validate_stage

StepResult = tuple[torch.Tensor, dict, int]  # loss, metrics, batch size (what `train_loop` expects)


@dataclass
class StageArgs:
    run: Path
    data: Path
    preset: str = "emoji"
    device: str = "cpu"
    steps: Optional[int] = None
    minutes: Optional[float] = None
    batch_size: int = 32
    lr: Optional[float] = None
    seed: int = 0
    text_encoder: str = DEFAULT_TEXT_ENCODER
    checkpoint_every_s: float = 300.0
    validate_every_s: float = 600.0  # seconds between held-out checks (`LoopConfig`)
    cond_drop_prob: float = 0.1
    ema_decay: float = 0.999  # the transformer stages' moving average (`loop.EMA`); 0 turns it off
    captions: str = DEFAULT_RECIPE  # the caption recipe of emoji data (`muse.data.captions`)
    lr_schedule: str = "cosine"  # or "constant": a budget that may grow between resumes (`LoopConfig`)
    critic_cond_scale: float = 3.0  # the guidance the generator samples under while a critic trains (the default's)


def _images_tensor(data: CaptionedImages, device: torch.device) -> torch.Tensor:
    return torch.from_numpy(data.images).to(device)  # (N, H, W, 3) uint8, kept compact on the device


def _batch_images(images: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    return images[idx].permute(0, 3, 1, 2).float() / 255.0  # (B, 3, H, W) in [0, 1]


def _loop_cfg(args: StageArgs, stage: str, lr: float, ema_decay: float = 0.0, cpu_amp: bool = False) -> LoopConfig:
    return LoopConfig(out_dir=RunFolder(args.run).stage(stage).root, steps=args.steps, minutes=args.minutes,
                      lr=args.lr or lr, seed=args.seed, checkpoint_every_s=args.checkpoint_every_s,
                      validate_every_s=args.validate_every_s,
                      ema_decay=ema_decay, lr_schedule=args.lr_schedule, cpu_amp=cpu_amp)


def _write_run_spec(args: StageArgs) -> None:
    """run.json: the preset, dataset and text encoder the run started with (kept from its first start)."""
    run = RunFolder(args.run)
    run.root.mkdir(parents=True, exist_ok=True)
    if not run.spec.is_file():
        run.spec.write_text(json.dumps({"preset": args.preset, "data": str(args.data),
                                        "text_encoder": args.text_encoder}, indent=2))


def model_from_run(run: Path, stage: str, cls=MaskedTransformer):
    """The stage's model from its latest checkpoint."""
    return cls.from_pretrained(RunFolder(run).stage(stage).model())


def _model_for_stage(run: Path, stage: str, config, cls=MaskedTransformer):
    """The stage's network: shaped like its checkpoint when it has one (a resumed run, or one seeded
    from a pipeline folder by `init_run`), else like the preset's `config`."""
    folder = RunFolder(run).stage(stage).model()
    if (folder / "config.json").is_file():
        config = read_config(folder, cls.config_class)
    return cls(config)


def run_tokenizer(run: Path) -> VQModel:
    """The tokenizer a pipeline exported from this run uses (decoder fine-tuned when that stage ran)."""
    decoder_tuned = RunFolder(run).stage("tokenizer_decoder").has_model()
    return model_from_run(run, "tokenizer_decoder" if decoder_tuned else "tokenizer", VQModel)


# pipeline component folder -> the training stage that makes it
STAGE_OF_COMPONENT = {"vq": "tokenizer", "base": "base", "superres": "superres", "base_critic": "base_critic",
                      "superres_critic": "superres_critic", "preview": "preview"}


def init_run(run: Path, weights: Path) -> list[str]:
    """Seed a run from a pipeline folder (e.g. the shipped `weights/`): each component becomes its
    stage's starting point, trained on with a fresh optimiser. Stages that already have a checkpoint
    are left alone. Returns the stages seeded.

    This is how training survives a new machine: `runs/` is not kept, the shipped weights are.
    """
    seeded = []
    for component, stage in STAGE_OF_COMPONENT.items():
        source, folder = Path(weights) / component, RunFolder(run).stage(stage)
        if not (source / "model.safetensors").is_file() or folder.has_model():
            continue
        target = folder.checkpoint / "model"
        target.mkdir(parents=True, exist_ok=True)
        for name in ("config.json", "model.safetensors"):
            shutil.copyfile(source / name, target / name)
        seeded.append(stage)
    return seeded


@dataclass
class _TokenizerSteps:
    """The tokenizer's training step, and the codebook upkeep every 50 steps that reuses the latest
    step's latents."""

    vq: VQModel
    images: torch.Tensor  # (N, H, W, 3) uint8, on the training device
    batch_size: int
    cpu_gen: torch.Generator  # every random draw of the stage, in order: batches, then code restarts
    restart_codes: bool  # off for decoder-only fine-tuning, which must keep every code as it is
    last_z: Optional[torch.Tensor] = None

    def step(self, net: nn.Module, generator: torch.Generator) -> StepResult:
        # Both sizes a tokenizer serves, every step: whole 64 px images (the super-res stage's ids)
        # and other images downsampled to 32 px (the base stage's). The space-to-depth stem makes
        # the 64 px pass affordable; the 32 px half costs a quarter of it. Each size's loss is its
        # own mean, so the small images are not outweighed by pixel count.
        n = self.batch_size
        idx = torch.randint(0, len(self.images), (2 * n,), generator=self.cpu_gen).to(self.images.device)
        full = _batch_images(self.images, idx[:n])
        small = F.avg_pool2d(_batch_images(self.images, idx[n:]), 2)
        loss64, m64, z = vq_loss(net, full)
        loss32, m32, _ = vq_loss(net, small)
        self.last_z = z.detach()
        metrics = {"loss": m64["loss"] + m32["loss"], "psnr_64": m64["psnr"], "psnr_32": m32["psnr"],
                   "qloss": m64["qloss"]}
        return loss64 + loss32, metrics, 2 * n

    def every_step(self, step: int) -> None:
        if step % 50 == 0 and self.restart_codes:
            self.vq.quantizer.restart_dead_codes(self.last_z.float(), threshold=0.03, generator=self.cpu_gen)


def train_tokenizer(args: StageArgs, decoder_only: bool = False) -> VQModel:
    """Train the VQ autoencoder; with decoder_only, fine-tune the decoder of the trained tokenizer.

    Decoder-only fine-tuning (stage folder `tokenizer_decoder`) keeps the encoder and codebook, so
    every token id stays valid: it can run while the transformers train on those ids, and it
    raises reconstruction quality without retraining anything downstream.
    """
    dist, device = init_distributed(args.device)
    preset = make_preset(args.preset)
    _write_run_spec(args)
    images = _images_tensor(load_dataset(args.data, SUPERRES_SIZE), device)
    if decoder_only:
        vq = model_from_run(args.run, "tokenizer", VQModel)
        vq.encoder.requires_grad_(False)
        vq.quantizer.requires_grad_(False)
    else:
        vq = _model_for_stage(args.run, "tokenizer", preset.vq, VQModel)
    steps = _TokenizerSteps(vq, images, args.batch_size, torch.Generator().manual_seed(args.seed + dist.rank),
                            restart_codes=not decoder_only)
    stage = "tokenizer_decoder" if decoder_only else "tokenizer"
    vq = train_loop(vq, steps.step, _loop_cfg(args, stage, 1e-3), device, dist, stage, steps.every_step)
    if decoder_only:
        vq.quantizer.train(False)
    return vq


@torch.no_grad()
def tokenize(args: StageArgs) -> dict[str, torch.Tensor]:
    """Encode every image at 32 and 64 px once (no augmentation, so ids never change); cached in the
    run until the tokenizer changes."""
    run = RunFolder(args.run)
    vq_file = run.stage("tokenizer").model() / "model.safetensors"
    if run.tokens.is_file() and run.tokens.stat().st_mtime >= vq_file.stat().st_mtime:
        return load_file(str(run.tokens))
    device = torch.device(args.device)
    vq = model_from_run(args.run, "tokenizer", VQModel).to(device)
    tokens = encode_ids(vq, load_dataset(args.data, SUPERRES_SIZE), device)
    save_file(tokens, str(run.tokens))
    return tokens


@torch.no_grad()
def encode_ids(vq: VQModel, data: CaptionedImages, device: torch.device) -> dict[str, torch.Tensor]:
    """Every image's token ids: {"ids32": (N, 8, 8) of the box-downsampled image, "ids64": (N, 16, 16)} on
    the CPU, from `data` at 64 px."""
    images = _images_tensor(data, device)
    ids32, ids64 = [], []
    for start in range(0, len(images), 256):
        batch = _batch_images(images, torch.arange(start, min(start + 256, len(images)), device=device))
        ids64.append(vq.encode(batch).cpu())
        ids32.append(vq.encode(F.avg_pool2d(batch, 2)).cpu())
    return {"ids32": torch.cat(ids32), "ids64": torch.cat(ids64)}


def train_transformer(args: StageArgs, stage: str) -> MaskedTransformer:
    """Train a transformer stage: base, superres, base_critic or superres_critic."""
    dist, device = init_distributed(args.device)
    preset = make_preset(args.preset)
    data = load_dataset(args.data, SUPERRES_SIZE)
    tokens = tokenize(args)
    ids32, ids64 = tokens["ids32"].to(device), tokens["ids64"].to(device)
    make_encoder = cache(partial(TextEncoder, args.text_encoder, device=args.device))
    text = CaptionBank.load_or_build(RunFolder(args.run).captions, data, make_encoder, args.seed, args.captions)
    is_critic = stage.endswith("critic")
    superres = stage.startswith("superres")
    model = _model_for_stage(args.run, stage, getattr(preset, stage))
    generator_model = model_from_run(args.run, stage.replace("_critic", "")).to(device) if is_critic else None
    if is_critic and not RunFolder(args.run).stage(stage).has_model():
        copied = critic_from_generator(model, generator_model)
        if dist.main:
            print(f"[{stage}] {copied} tensors start from the generator's weights", flush=True)
    cpu_gen = torch.Generator().manual_seed(args.seed + 7 + dist.rank)

    def step_fn(net: nn.Module, generator: torch.Generator) -> StepResult:
        idx = torch.randint(0, len(data), (args.batch_size,), generator=cpu_gen)
        embeds, mask = text(idx, cpu_gen, device)
        idx = idx.to(device)
        ids = (ids64 if superres else ids32)[idx].flatten(1)
        cond = ids32[idx].flatten(1) if superres else None
        if is_critic:
            loss, metrics = critic_loss(generator_model, model, ids, embeds, mask, generator, cond_ids=cond,
                                        cond_scale=args.critic_cond_scale,
                                        cond_drop_prob=args.cond_drop_prob, net=net)
        else:
            loss, metrics = maskgit_loss(model, ids, embeds, mask, generator, cond_ids=cond,
                                         cond_drop_prob=args.cond_drop_prob, net=net)
        return loss, metrics, ids.shape[0]

    validate = None
    if not is_critic:
        rows = build_validation(data, make_encoder(), args.seed)
        target, cond_ids = (ids64, ids32) if superres else (ids32, None)
        validate = partial(validate_stage, rows=rows, ids=target.flatten(1),
                           cond_ids=None if cond_ids is None else cond_ids.flatten(1))
    cfg = _loop_cfg(args, stage, 5e-4 if not is_critic else 3e-4, 0.0 if is_critic else args.ema_decay, cpu_amp=True)
    return train_loop(model, step_fn, cfg, device, dist, stage, validate=validate)


def critic_from_generator(critic: MaskedTransformer, generator: MaskedTransformer) -> int:
    """Start a fresh critic from its generator's weights, in place; returns the tensors copied.

    The generator already knows which token fits where; the critic only has to learn to read that
    off as "this token is wrong". Every tensor of the same name and shape is copied, the token
    embedding without the generator's mask row; the output head (logits vs one score) stays fresh.
    """
    source, copied = generator.state_dict(), 0
    with torch.no_grad():
        for name, tensor in critic.state_dict().items():
            if name.startswith("to_logits") or name not in source:
                continue
            weights = source[name]
            if name == "token_emb.weight":
                weights = weights[:tensor.shape[0]]  # the mask token is the generator's last row
            if weights.shape == tensor.shape:
                tensor.copy_(weights)
                copied += 1
    return copied


def train_base(args: StageArgs) -> MaskedTransformer:
    return train_transformer(args, "base")


def train_superres(args: StageArgs) -> MaskedTransformer:
    return train_transformer(args, "superres")


def train_critics(args: StageArgs) -> None:
    train_transformer(args, "base_critic")
    train_transformer(args, "superres_critic")


PREVIEW_TARGETS = 2048  # token grids whose full-decoder images are the distillation targets


def train_preview(args: StageArgs) -> PreviewDecoder:
    """Distil the tiny preview decoder from the run's tokenizer decoder (`muse.preview`).

    Targets are the full decoder's images of the dataset's own token grids at both stages' sizes
    (8x8 and 16x16), decoded once; batches alternate between the two sizes."""
    dist, device = init_distributed(args.device)
    vq = run_tokenizer(args.run).to(device).eval()
    tokens = tokenize(args)
    cpu_gen = torch.Generator().manual_seed(args.seed + dist.rank)
    sets = []
    for key in ("ids32", "ids64"):
        ids = tokens[key][torch.randperm(len(tokens[key]), generator=cpu_gen)[:PREVIEW_TARGETS]]
        with torch.inference_mode():
            codes = torch.cat([vq.quantizer.lookup(ids[i:i + 256].to(device)) for i in range(0, len(ids), 256)])
            targets = torch.cat([vq.decode(ids[i:i + 256].to(device)) for i in range(0, len(ids), 256)])
        sets.append((codes.clone(), targets.clone()))  # out of inference mode, for autograd
    preview = _model_for_stage(args.run, "preview", PreviewConfig(code_dim=vq.config.code_dim,
                                                                  downsample=vq.config.downsample), PreviewDecoder)
    sizes = itertools.cycle(sets)  # 8x8, 16x16, 8x8, ...: one size per step

    def step_fn(net: nn.Module, generator: torch.Generator) -> StepResult:
        codes, targets = next(sizes)
        idx = torch.randint(0, len(codes), (args.batch_size,), generator=cpu_gen)
        loss, metrics = distill_loss(net, codes[idx], targets[idx])
        return loss, metrics, len(idx)

    return train_loop(preview, step_fn, _loop_cfg(args, "preview", 2e-3), device, dist, "preview")


__all__ = ["StageArgs", "init_run", "model_from_run", "run_tokenizer", "train_tokenizer", "tokenize",
           "train_transformer", "critic_from_generator", "train_base", "train_superres", "train_critics", "train_preview"]
