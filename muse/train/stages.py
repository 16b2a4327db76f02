"""The training stages: tokenizer, base, super-res, critics; and export to a pipeline folder.

Each stage reads the dataset and the earlier stages' results from one run folder:
  run/tokenizer/checkpoint/model     run/tokens.safetensors (ids at 32 and 64 px)
  run/base/checkpoint/model          run/superres/checkpoint/model
  run/base_critic/checkpoint/model   run/superres_critic/checkpoint/model
  run/preview/checkpoint/model       (a tiny preview decoder distilled from the tokenizer's decoder)
"""

from __future__ import annotations

import json
import random
import shutil
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Optional

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from ..presets import BASE_SIZE, SUPERRES_SIZE, Preset, make_preset  # noqa: F401 (re-exported)
from ..data import CaptionedImages, load_dataset
from ..pipeline import MusePipeline, PipelineConfig
from ..preview import PreviewConfig, PreviewDecoder, distill_loss
from ..data.captions import exact_name
from ..text import DEFAULT_TEXT_ENCODER, TextEncoder
from ..transformer import MaskedTransformer
from ..vq import VQModel
from .loop import LoopConfig, checkpoint_folder, init_distributed, train_loop
from .losses import critic_loss, maskgit_loss, vq_loss

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
    cond_drop_prob: float = 0.1


def _images_tensor(data: CaptionedImages, device: torch.device) -> torch.Tensor:
    return torch.from_numpy(data.images).to(device)  # (N, H, W, 3) uint8, kept compact on the device


def _batch_images(images: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    return images[idx].permute(0, 3, 1, 2).float() / 255.0  # (B, 3, H, W) in [0, 1]


def _loop_cfg(args: StageArgs, stage: str, lr: float) -> LoopConfig:
    return LoopConfig(out_dir=args.run / stage, steps=args.steps, minutes=args.minutes, lr=args.lr or lr,
                      seed=args.seed, checkpoint_every_s=args.checkpoint_every_s)


def _save_preset(args: StageArgs, preset: Preset) -> None:
    args.run.mkdir(parents=True, exist_ok=True)
    spec = args.run / "run.json"
    if not spec.is_file():
        spec.write_text(json.dumps({"preset": args.preset, "data": str(args.data),
                                    "text_encoder": args.text_encoder}, indent=2))


def model_from_run(run: Path, stage: str, cls=MaskedTransformer):
    return cls.from_pretrained(checkpoint_folder(run / stage / "checkpoint") / "model")


def _model_for_stage(run: Path, stage: str, config, cls=MaskedTransformer):
    """The stage's network: shaped like its checkpoint when it has one (a resumed run, or one seeded
    from a pipeline folder by `init_run`), else like the preset's `config`."""
    folder = checkpoint_folder(run / stage / "checkpoint") / "model"
    if (folder / "config.json").is_file():
        from ..hub import read_config

        config = read_config(folder, cls.config_class)
    return cls(config)


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
        source = Path(weights) / component
        target = run / stage / "checkpoint" / "model"
        if not (source / "model.safetensors").is_file() or (checkpoint_folder(target.parent) / "model").is_dir():
            continue
        target.mkdir(parents=True, exist_ok=True)
        for name in ("config.json", "model.safetensors"):
            shutil.copyfile(source / name, target / name)
        seeded.append(stage)
    return seeded


def train_tokenizer(args: StageArgs, decoder_only: bool = False) -> VQModel:
    """Train the VQ autoencoder; with decoder_only, fine-tune the decoder of the trained tokenizer.

    Decoder-only fine-tuning (stage folder `tokenizer_decoder`) keeps the encoder and codebook, so
    every token id stays valid: it can run while the transformers train on those ids, and it
    raises reconstruction quality without retraining anything downstream.
    """
    dist, device = init_distributed(args.device)
    preset = make_preset(args.preset)
    _save_preset(args, preset)
    data = load_dataset(args.data, SUPERRES_SIZE)
    images = _images_tensor(data, device)
    if decoder_only:
        vq = model_from_run(args.run, "tokenizer", VQModel)
        vq.encoder.requires_grad_(False)
        vq.quantizer.requires_grad_(False)
    else:
        vq = _model_for_stage(args.run, "tokenizer", preset.vq, VQModel)
    cpu_gen = torch.Generator().manual_seed(args.seed + dist.rank)
    last_z: dict = {}

    def step_fn(net, generator):
        # Both sizes a tokenizer serves, every step: whole 64 px images (the super-res stage's ids)
        # and other images downsampled to 32 px (the base stage's). The space-to-depth stem makes
        # the 64 px pass affordable; the 32 px half costs a quarter of it. Each size's loss is its
        # own mean, so the small images are not outweighed by pixel count.
        idx = torch.randint(0, len(images), (2 * args.batch_size,), generator=cpu_gen).to(device)
        full = _batch_images(images, idx[: args.batch_size])
        small = F.avg_pool2d(_batch_images(images, idx[args.batch_size:]), 2)
        loss64, m64, z = vq_loss(net, full)
        loss32, m32, _ = vq_loss(net, small)
        last_z["z"] = z.detach()
        metrics = {"loss": m64["loss"] + m32["loss"], "psnr_64": m64["psnr"], "psnr_32": m32["psnr"],
                   "qloss": m64["qloss"]}
        return loss64 + loss32, metrics, 2 * args.batch_size

    def restart(step: int) -> None:
        if step % 50 == 0 and not decoder_only:
            vq.quantizer.restart_dead_codes(last_z["z"].float(), threshold=0.03, generator=cpu_gen)

    stage = "tokenizer_decoder" if decoder_only else "tokenizer"
    vq = train_loop(vq, step_fn, _loop_cfg(args, stage, 1e-3), device, dist, stage, restart)
    if decoder_only:
        vq.quantizer.train(False)
    return vq


@torch.no_grad()
def tokenize(args: StageArgs) -> dict[str, torch.Tensor]:
    """Encode every image at 32 and 64 px once (no augmentation, so ids never change)."""
    out = args.run / "tokens.safetensors"
    vq_file = args.run / "tokenizer" / "checkpoint" / "model" / "model.safetensors"
    if out.is_file() and out.stat().st_mtime >= vq_file.stat().st_mtime:
        return load_file(str(out))
    device = torch.device(args.device)
    vq = model_from_run(args.run, "tokenizer", VQModel).to(device)
    data = load_dataset(args.data, SUPERRES_SIZE)
    images = _images_tensor(data, device)
    ids32, ids64 = [], []
    for start in range(0, len(images), 256):
        batch = _batch_images(images, torch.arange(start, min(start + 256, len(images)), device=device))
        ids64.append(vq.encode(batch).cpu())
        ids32.append(vq.encode(F.avg_pool2d(batch, 2)).cpu())
    tokens = {"ids32": torch.cat(ids32), "ids64": torch.cat(ids64)}
    save_file(tokens, str(out))
    return tokens


class CaptionBank:
    """A fixed set of encoded captions per image, shared by every transformer stage of a run.

    Encoding captions is the text encoder's forward pass, which on a CPU costs as much as a
    training step; drawing each step's captions from a bank encoded once (sorted by length, so
    batches carry little padding) removes that cost from every stage.
    """

    def __init__(self, embeds: torch.Tensor, offsets: torch.Tensor, choices: torch.Tensor):
        self.embeds, self.offsets, self.choices = embeds, offsets, choices  # (T, D) fp16, (U+1,), (N, K)

    @classmethod
    def build(cls, data: CaptionedImages, encoder: TextEncoder, per_image: int, seed: int) -> "CaptionBank":
        rng = random.Random(seed)
        rows = []
        for i, record in enumerate(data.records):
            caps = [exact_name(record)] if "name" in record else []  # the evaluation prompt, always
            caps += [data.caption(i, rng) for _ in range(per_image - len(caps))]
            rows.append(caps)
        unique = sorted({c for row in rows for c in row}, key=lambda c: (len(c), c))
        index = {c: j for j, c in enumerate(unique)}
        pieces: list[torch.Tensor] = []
        for start in tqdm(range(0, len(unique), 256), desc="encoding captions", mininterval=5):
            embeds, mask = encoder(unique[start:start + 256])
            pieces += [e[m].to(torch.float16).cpu() for e, m in zip(embeds, mask)]
        lengths = torch.tensor([max(1, p.shape[0]) for p in pieces])
        pieces = [p if p.shape[0] else torch.zeros(1, encoder.dim, dtype=torch.float16) for p in pieces]
        offsets = torch.cat((torch.zeros(1, dtype=torch.long), lengths.cumsum(0)))
        choices = torch.tensor([[index[c] for c in row] for row in rows])
        return cls(torch.cat(pieces), offsets, choices)

    @classmethod
    def load_or_build(cls, path: Path, data: CaptionedImages, args: StageArgs, per_image: int = 6) -> "CaptionBank":
        if path.is_file():
            t = load_file(str(path))
            return cls(t["embeds"], t["offsets"], t["choices"])
        bank = cls.build(data, TextEncoder(args.text_encoder, device=args.device), per_image, args.seed)
        save_file({"embeds": bank.embeds, "offsets": bank.offsets, "choices": bank.choices}, str(path))
        return bank

    def __call__(self, image_indices: torch.Tensor, generator: torch.Generator,
                 device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """One random caption per image: (B, L, D) float embeddings and (B, L) mask."""
        pick = torch.randint(0, self.choices.shape[1], (len(image_indices),), generator=generator)
        ids = self.choices[image_indices, pick]
        starts, ends = self.offsets[ids], self.offsets[ids + 1]
        longest = int((ends - starts).max())
        embeds = torch.zeros(len(ids), longest, self.embeds.shape[1])
        mask = torch.zeros(len(ids), longest, dtype=torch.bool)
        for row, (a, b) in enumerate(zip(starts.tolist(), ends.tolist())):
            embeds[row, : b - a] = self.embeds[a:b].float()
            mask[row, : b - a] = True
        return embeds.to(device), mask.to(device)


def _transformer_stage(args: StageArgs, stage: str) -> MaskedTransformer:
    dist, device = init_distributed(args.device)
    preset = make_preset(args.preset)
    data = load_dataset(args.data, SUPERRES_SIZE)
    tokens = tokenize(args)
    ids32, ids64 = tokens["ids32"].to(device), tokens["ids64"].to(device)
    text = CaptionBank.load_or_build(args.run / "captions.safetensors", data, args)
    is_critic = stage.endswith("critic")
    superres = stage.startswith("superres")
    model = _model_for_stage(args.run, stage, getattr(preset, stage))
    generator_model = model_from_run(args.run, stage.replace("_critic", "")).to(device) if is_critic else None
    cpu_gen = torch.Generator().manual_seed(args.seed + 7 + dist.rank)

    def step_fn(net, generator):
        idx = torch.randint(0, len(data), (args.batch_size,), generator=cpu_gen)
        embeds, mask = text(idx, cpu_gen, device)
        idx = idx.to(device)
        ids = (ids64 if superres else ids32)[idx].flatten(1)
        cond = ids32[idx].flatten(1) if superres else None
        if is_critic:
            loss, metrics = critic_loss(generator_model, model, ids, embeds, mask, generator, cond_ids=cond,
                                        cond_drop_prob=args.cond_drop_prob, net=net)
        else:
            loss, metrics = maskgit_loss(model, ids, embeds, mask, generator, cond_ids=cond,
                                         cond_drop_prob=args.cond_drop_prob, net=net)
        return loss, metrics, ids.shape[0]

    return train_loop(model, step_fn, _loop_cfg(args, stage, 5e-4 if not is_critic else 3e-4), device, dist, stage)


def train_base(args: StageArgs) -> MaskedTransformer:
    return _transformer_stage(args, "base")


def train_superres(args: StageArgs) -> MaskedTransformer:
    return _transformer_stage(args, "superres")


def train_critics(args: StageArgs) -> None:
    _transformer_stage(args, "base_critic")
    _transformer_stage(args, "superres_critic")


def run_tokenizer(run: Path) -> VQModel:
    """The tokenizer a pipeline exported from this run uses (decoder fine-tuned when that stage ran)."""
    decoder_tuned = (run / "tokenizer_decoder" / "checkpoint" / "model").is_dir()
    return model_from_run(run, "tokenizer_decoder" if decoder_tuned else "tokenizer", VQModel)


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
    turn = [0]

    def step_fn(net, generator):
        codes, targets = sets[turn[0] % 2]
        turn[0] += 1
        idx = torch.randint(0, len(codes), (args.batch_size,), generator=cpu_gen)
        loss, metrics = distill_loss(net, codes[idx], targets[idx])
        return loss, metrics, len(idx)

    return train_loop(preview, step_fn, _loop_cfg(args, "preview", 2e-3), device, dist, "preview")


def export(run: Path, out: Path, text_encoder: str = DEFAULT_TEXT_ENCODER, defaults: Optional[dict] = None) -> Path:
    """Write a pipeline folder (what `load_pipeline` reads) from a run's latest checkpoints."""
    parts = {"vq": run_tokenizer(run)}
    for name in ("base", "superres", "base_critic", "superres_critic"):
        if (run / name / "checkpoint" / "model").is_dir():
            parts[name] = model_from_run(run, name)
    if (run / "preview" / "checkpoint" / "model").is_dir():
        parts["preview"] = model_from_run(run, "preview", PreviewDecoder)
    config = PipelineConfig(text_encoder=text_encoder, base_size=BASE_SIZE, superres_size=SUPERRES_SIZE,
                            defaults=defaults or {})
    # Only the text encoder's width matters for the compatibility check; no need to load it here.
    stand_in = SimpleNamespace(dim=parts["base"].config.text_dim)
    pipe = MusePipeline(parts["vq"], parts["base"], stand_in, parts.get("superres"), parts.get("base_critic"),
                        parts.get("superres_critic"), config, preview=parts.get("preview"))
    pipe.save_pretrained(out)
    return out


def stage_summary(run: Path) -> dict:
    """Steps, training time and last metrics of each stage in a run (for the model card)."""
    summary = {}
    for stage in ("tokenizer", "tokenizer_decoder", "base", "superres", "base_critic", "superres_critic", "preview"):
        state = run / stage / "checkpoint" / "state.json"
        if state.is_file():
            info = json.loads(state.read_text())
            metrics = run / stage / "metrics.jsonl"
            last = metrics.read_text().splitlines()[-1] if metrics.is_file() and metrics.stat().st_size else "{}"
            summary[stage] = {**info, "last": json.loads(last)}
    return summary


__all__ = ["Preset", "make_preset", "StageArgs", "init_run", "train_tokenizer", "tokenize", "train_base", "train_superres",
           "train_critics", "train_preview", "export", "stage_summary", "CaptionBank"]
