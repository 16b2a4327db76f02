"""Training: one optimisation step of each stage lowers the loss on a fixed batch; the loop resumes."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from muse.config import TransformerConfig
from muse.data import CaptionedImages
from muse.eval import eval_prompts, random_floor, topk_accuracy
from muse.train.losses import critic_loss, maskgit_loss, vq_loss
from muse.train.loop import Dist, LoopConfig, load_checkpoint, make_optimizer, train_loop
from muse.transformer import MaskedTransformer
from muse.vq import VQModel

from .conftest import TINY_GEN, TINY_VQ


def _loss_drops(model, loss_fn, lr=3e-3, steps=3):
    """Loss on a fixed batch (fixed masks: same generator seed) before and after a few steps."""
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    before = loss_fn(torch.Generator().manual_seed(0))[0].item()
    for _ in range(steps):
        loss = loss_fn(torch.Generator().manual_seed(0))[0]
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = loss_fn(torch.Generator().manual_seed(0))[0].item()
    return before, after


def test_tokenizer_step_lowers_loss():
    torch.manual_seed(0)
    vq = VQModel(TINY_VQ)
    images = torch.rand(4, 3, 32, 32)
    before, after = _loss_drops(vq, lambda g: vq_loss(vq, images))
    assert after < before


@pytest.mark.parametrize("cfg", [dict(seq_len=64), dict(seq_len=64, self_cond=True, self_critic=True),
                                 dict(seq_len=256, cond_seq_len=64), dict(seq_len=256, cond_seq_len=64, cond_spatial=True)])
def test_transformer_step_lowers_loss(cfg):
    torch.manual_seed(0)
    model = MaskedTransformer(TransformerConfig(**cfg, **TINY_GEN))
    ids = torch.randint(0, 32, (4, cfg["seq_len"]))
    cond = torch.randint(0, 32, (4, 64)) if cfg.get("cond_seq_len") else None
    text, mask = torch.randn(4, 5, 384), torch.ones(4, 5, dtype=torch.bool)
    before, after = _loss_drops(model, lambda g: maskgit_loss(model, ids, text, mask, g, cond_ids=cond))
    assert after < before


def test_preview_decoder_distils_towards_the_full_decoder():
    from muse.preview import PreviewConfig, PreviewDecoder, distill_loss

    torch.manual_seed(0)
    vq = VQModel(TINY_VQ).eval()
    ids = torch.randint(0, 32, (8, 8, 8))
    with torch.no_grad():
        codes, target = vq.quantizer.lookup(ids), vq.decode(ids)
    preview = PreviewDecoder(PreviewConfig(code_dim=TINY_VQ.code_dim, downsample=TINY_VQ.downsample, hidden=16))
    assert preview(codes).shape == target.shape == (8, 3, 32, 32)
    before, after = _loss_drops(preview, lambda g: distill_loss(preview, codes, target), steps=10)
    assert after < before


def test_critic_step_lowers_loss():
    torch.manual_seed(0)
    gen = MaskedTransformer(TransformerConfig(seq_len=64, **TINY_GEN)).eval()
    critic = MaskedTransformer(TransformerConfig(seq_len=64, kind="critic", **TINY_GEN))
    ids = torch.randint(0, 32, (4, 64))
    text, mask = torch.randn(4, 5, 384), torch.ones(4, 5, dtype=torch.bool)
    before, after = _loss_drops(critic, lambda g: critic_loss(gen, critic, ids, text, mask, g))
    assert after < before


def test_loop_checkpoints_and_resumes(tmp_path):
    torch.manual_seed(0)
    vq = VQModel(TINY_VQ)
    images = torch.rand(4, 3, 32, 32)

    def step(net, gen):
        loss, metrics, _ = vq_loss(net, images)
        return loss, metrics, 4

    cfg = LoopConfig(out_dir=tmp_path, steps=6, log_every=2, lr=1e-3)
    train_loop(vq, step, cfg, torch.device("cpu"), Dist(), "t")
    state = json.loads((tmp_path / "checkpoint" / "state.json").read_text())
    assert state["step"] == 6 and (tmp_path / "loss.png").is_file()
    assert len((tmp_path / "metrics.jsonl").read_text().splitlines()) == 3
    # Resume: a fresh model picks up the saved weights and optimiser, then trains on to 8 steps.
    again = VQModel(TINY_VQ)
    cfg.steps = 8
    train_loop(again, step, cfg, torch.device("cpu"), Dist(), "t")
    assert json.loads((tmp_path / "checkpoint" / "state.json").read_text())["step"] == 8
    opt = make_optimizer(again, cfg)
    assert load_checkpoint(tmp_path / "checkpoint", again, opt)["step"] == 8
    assert len(opt.state) > 0
    # A save killed between its two renames leaves only checkpoint.old: the next run resumes from it.
    (tmp_path / "checkpoint").rename(tmp_path / "checkpoint.old")
    (tmp_path / "checkpoint.tmp").mkdir()  # and a half-written new one, ignored
    cfg.steps = 9
    train_loop(VQModel(TINY_VQ), step, cfg, torch.device("cpu"), Dist(), "t")
    assert json.loads((tmp_path / "checkpoint" / "state.json").read_text())["step"] == 9
    assert not (tmp_path / "checkpoint.old").exists() and not (tmp_path / "checkpoint.tmp").exists()


def _fake_data(n=40):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (n, 64, 64, 3), dtype=np.uint8)
    records = [{"key": f"k{i // 2}", "name": f"emoji {i // 2}", "set": "noto" if i % 2 else "twemoji"} for i in range(n)]
    return CaptionedImages(images, records)


def test_retrieval_metric_is_perfect_on_dataset_images_and_low_for_random():
    data = _fake_data()
    keys = [r["key"] for r in data.records]
    assert topk_accuracy(data.images, keys, data) == {"top1": 1.0, "top5": 1.0}
    prompts = eval_prompts(data, 10)
    assert len({name for _, name in prompts}) == 10
    assert random_floor(data, prompts)["top1"] < 0.5


def _write_emoji_folder(folder, n=12):
    """A tiny dataset in the emoji build's layout (images.npy + meta.jsonl)."""
    folder.mkdir(parents=True)
    data = _fake_data(n)
    np.save(folder / "images.npy", data.images)
    with open(folder / "meta.jsonl", "w") as fh:
        for r in data.records:
            fh.write(json.dumps({**r, "short_names": [], "skin_tone": None, "subcategory": "test"}) + "\n")
    return folder


@pytest.mark.slow
def test_stages_export_a_pipeline_and_a_new_run_starts_from_it(tmp_path, capsys):
    """The command line trains every stage on a tiny preset, exports a pipeline that generates, and a
    fresh run seeded from that folder (`--init`, as from the shipped weights/ on a new machine)
    trains on from its weights instead of from random ones."""
    from muse import load_pipeline
    from muse.train.__main__ import main
    from muse.train.stages import CaptionBank, model_from_run

    data = _write_emoji_folder(tmp_path / "data")
    run = tmp_path / "run"
    common = ["--data", str(data), "--run", str(run), "--preset", "tiny", "--batch-size", "4"]
    assert main(["all", "--steps", "2", *common]) == 0
    bank = CaptionBank.load_or_build(run / "captions.safetensors", None, None)  # built by the run
    assert bank.choices.shape == (12, 6)  # six encoded captions per image, the exact name first
    embeds, mask = bank(torch.arange(4), torch.Generator().manual_seed(0), torch.device("cpu"))
    assert embeds.shape[:2] == mask.shape and mask[:, 0].all()
    assert main(["export", "--run", str(run), "--out", str(tmp_path / "weights")]) == 0
    pipe = load_pipeline(tmp_path / "weights")
    assert pipe.superres_model.config.cond_spatial and pipe.vq.config.space_to_depth == 2
    assert pipe("emoji 1", seed=0, timesteps=2)[0].size == (64, 64)
    # The evaluation command line, every part of it, on that pipeline and data.
    from muse.eval import main as eval_main

    report = tmp_path / "eval.json"
    assert eval_main(["all", "--data", str(data), "--weights", str(tmp_path / "weights"), "--count", "4",
                      "--sweep", "--sweep-count", "2", "--out", str(report)]) == 0
    assert eval_main(["tokenizer", "--data", str(tmp_path / "nowhere")]) == 2  # a one-line error, no traceback
    figures = json.loads(report.read_text())
    assert {"tokenizer", "superres", "adherence", "floor"} <= set(figures)
    assert "default (4 names)" in figures["adherence"] and "critic on (2 names)" in figures["adherence"]
    assert (tmp_path / "weights" / "samples.png").is_file()

    fresh = tmp_path / "fresh"
    capsys.readouterr()
    assert main(["base", "--steps", "1", "--init", str(tmp_path / "weights"),
                 *[a if a != str(run) else str(fresh) for a in common]]) == 0
    out = capsys.readouterr().out
    assert "seeded tokenizer, base, superres" in out and "fresh optimiser" in out
    shipped = model_from_run(run, "base").state_dict()
    tuned = model_from_run(fresh, "base").state_dict()
    # One small step from the exported weights: close to them, nowhere near a new random init.
    assert all((tuned[k] - shipped[k]).abs().max() < 0.05 for k in shipped)


def test_paraphrases_are_held_out_from_every_training_caption():
    """The paraphrase prompts must never be a caption the model was trained on: no template of
    `muse.data.captions` applied to the target's name gives one."""
    import random

    from muse.data.captions import TEMPLATES, sample_caption
    from muse.data.paraphrases import PARAPHRASES

    texts = [text for text, _ in PARAPHRASES]
    assert len(texts) >= 50 and len(set(texts)) == len(texts)
    for text, name in PARAPHRASES:
        record = {"name": name, "short_names": [], "set": "noto", "subcategory": "x"}
        trained = {t.format(s=name, style=style, subcategory="x") for t in TEMPLATES for style in ("noto", "twemoji")}
        trained |= {sample_caption(record, random.Random(i)) for i in range(50)}
        assert text not in trained and text.lower() == text


def test_superres_fidelity_and_sample_sheet_on_a_tiny_pipeline(tiny_pipe):
    from muse.eval import paraphrase_prompts, sample_sheet, superres_fidelity

    data = _fake_data(8)
    data.records[0]["name"] = "slice of pizza"
    assert paraphrase_prompts(data) == [("k0", "a slice of pepperoni pizza")]
    scores = superres_fidelity(tiny_pipe, data, count=3, timesteps=2)
    assert scores["count"] == 3 and all(0 < scores[k] < 60 for k in ("superres_psnr", "bicubic_psnr",
                                                                        "tokenizer_psnr_64"))
    sheet = sample_sheet(tiny_pipe, prompts=["a", "b", "c"], seeds=(0, 1), timesteps=2)
    assert sheet.size == (8 * 128, 14 + 2 * 128)
