"""Training: one optimisation step of each stage lowers the loss on a fixed batch; the loop resumes."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from muse.data import CaptionedImages
from muse.data.captions import exact_name
from muse.eval import name_prompts, random_floor, ranking_auc, topk_accuracy
from muse.train.captions import CaptionBank
from muse.train.losses import critic_loss, maskgit_loss, vq_loss
from muse.train.loop import Dist, LoopConfig, load_checkpoint, make_optimizer, train_loop
from muse.train.paths import RunFolder
from muse.transformer import MaskedTransformer
from muse.vq import VQModel

from .conftest import TINY


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
    vq = VQModel(TINY.vq)
    images = torch.rand(4, 3, 32, 32)
    before, after = _loss_drops(vq, lambda g: vq_loss(vq, images))
    assert after < before


@pytest.mark.parametrize("cfg", [dict(seq_len=64), dict(seq_len=64, self_cond=True, self_critic=True),
                                 dict(seq_len=256, cond_seq_len=64), dict(seq_len=256, cond_seq_len=64, cond_spatial=True)])
def test_transformer_step_lowers_loss(cfg):
    torch.manual_seed(0)
    model = MaskedTransformer(replace(TINY.base, **cfg))
    ids = torch.randint(0, 32, (4, cfg["seq_len"]))
    cond = torch.randint(0, 32, (4, 64)) if cfg.get("cond_seq_len") else None
    text, mask = torch.randn(4, 5, 384), torch.ones(4, 5, dtype=torch.bool)
    before, after = _loss_drops(model, lambda g: maskgit_loss(model, ids, text, mask, g, cond_ids=cond))
    assert after < before


def test_preview_decoder_distils_towards_the_full_decoder():
    from muse.preview import PreviewConfig, PreviewDecoder, distill_loss

    torch.manual_seed(0)
    vq = VQModel(TINY.vq).eval()
    ids = torch.randint(0, 32, (8, 8, 8))
    with torch.no_grad():
        codes, target = vq.quantizer.lookup(ids), vq.decode(ids)
    preview = PreviewDecoder(PreviewConfig(code_dim=TINY.vq.code_dim, downsample=TINY.vq.downsample, hidden=16))
    assert preview(codes).shape == target.shape == (8, 3, 32, 32)
    before, after = _loss_drops(preview, lambda g: distill_loss(preview, codes, target), steps=10)
    assert after < before


@pytest.mark.parametrize("confidence_input,cond_scale", [(False, 1.0), (True, 3.0)])
def test_critic_step_lowers_loss(confidence_input, cond_scale):
    torch.manual_seed(0)
    gen = MaskedTransformer(TINY.base).eval()
    critic = MaskedTransformer(replace(TINY.base_critic, confidence_input=confidence_input))
    ids = torch.randint(0, 32, (4, 64))
    text, mask = torch.randn(4, 5, 384), torch.ones(4, 5, dtype=torch.bool)
    before, after = _loss_drops(critic, lambda g: critic_loss(gen, critic, ids, text, mask, g, cond_scale=cond_scale))
    assert after < before


def test_ranking_auc_is_the_share_of_wrong_right_pairs_ranked_right():
    gen = torch.Generator().manual_seed(0)
    scores = torch.randint(0, 6, (40,), generator=gen).float()  # many ties
    wrong = torch.rand(40, generator=gen) < 0.4
    pairs = scores[wrong][:, None] - scores[~wrong][None, :]
    brute = ((pairs > 0).float() + 0.5 * (pairs == 0).float()).mean().item()
    assert ranking_auc(scores, wrong) == pytest.approx(brute)
    assert ranking_auc(wrong.float(), wrong) == 1.0 and ranking_auc(-wrong.float(), wrong) == 0.0
    assert np.isnan(ranking_auc(scores, torch.zeros(40, dtype=torch.bool)))  # no wrong token: undefined


def test_critic_starts_from_its_generator():
    """A fresh critic reads the generator's features: everything but the output head is copied."""
    from muse.train.stages import critic_from_generator

    torch.manual_seed(0)
    for gen_cfg, critic_cfg in ((TINY.base, TINY.base_critic), (TINY.superres, TINY.superres_critic)):
        gen, critic = MaskedTransformer(gen_cfg), MaskedTransformer(critic_cfg)
        head = critic.to_logits.weight.clone()
        copied = critic_from_generator(critic, gen)
        assert copied == len(critic.state_dict()) - 1  # all but to_logits
        assert torch.equal(critic.token_emb.weight, gen.token_emb.weight[:-1])  # without the mask row
        assert torch.equal(critic.blocks[-1].ff.state_dict()["4.weight"], gen.blocks[-1].ff.state_dict()["4.weight"])
        assert torch.equal(critic.to_logits.weight, head) and critic.to_logits.weight.shape == (1, gen_cfg.dim)


def test_loop_checkpoints_and_resumes(tmp_path):
    torch.manual_seed(0)
    vq = VQModel(TINY.vq)
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
    again = VQModel(TINY.vq)
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
    train_loop(VQModel(TINY.vq), step, cfg, torch.device("cpu"), Dist(), "t")
    assert json.loads((tmp_path / "checkpoint" / "state.json").read_text())["step"] == 9
    assert not (tmp_path / "checkpoint.old").exists() and not (tmp_path / "checkpoint.tmp").exists()


def test_loop_keeps_a_moving_average_that_export_takes_and_resume_restores(tmp_path):
    """With ema_decay, the checkpoint holds ema/ beside model/; the stage's weights to use are the
    average; held-out checks see the average; a resumed run goes on averaging where it stopped."""
    from muse.train.paths import StageFolder

    torch.manual_seed(0)
    model = MaskedTransformer(TINY.base)
    ids, text, mask = torch.randint(0, 32, (4, 64)), torch.randn(4, 5, 384), torch.ones(4, 5, dtype=torch.bool)
    seen = []

    def step(net, gen):
        loss, metrics = maskgit_loss(net, ids, text, mask, gen)
        return loss, metrics, 4

    def validate(m):
        seen.append(m)
        return {"val_x_acc": 0.5}

    start = {k: v.clone() for k, v in model.state_dict().items()}
    cfg = LoopConfig(out_dir=tmp_path, steps=6, log_every=2, lr=1e-2, ema_decay=0.5, validate_every_s=0.0,
                     warmup=1, lr_schedule="constant")
    train_loop(model, step, cfg, torch.device("cpu"), Dist(), "t", validate=validate)
    folder = StageFolder(tmp_path)
    assert folder.model() == tmp_path / "checkpoint" / "ema"
    assert json.loads((tmp_path / "checkpoint" / "state.json").read_text())["ema_updates"] == 6
    ema = MaskedTransformer.from_pretrained(folder.model()).state_dict()
    trained = model.state_dict()
    name = "to_logits.weight"
    assert not torch.equal(ema[name], trained[name]) and not torch.equal(ema[name], start[name])
    # the average lies between where training started and where it got to
    assert (ema[name] - trained[name]).abs().mean() < (start[name] - trained[name]).abs().mean()
    assert seen and all(m is not model for m in seen)  # held-out checks ran on the average
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert any("val_x_acc" in r for r in rows)
    assert [r["lr"] for r in rows if "lr" in r] == [1e-2] * 3  # constant after a one-step warmup
    cfg.steps = 8
    train_loop(MaskedTransformer(TINY.base), step, cfg, torch.device("cpu"), Dist(), "t")
    assert json.loads((tmp_path / "checkpoint" / "state.json").read_text())["ema_updates"] == 8


def test_held_out_validation_masks_fixed_batches_of_paraphrases_and_names(text_encoder):
    from muse.data.paraphrases import PARAPHRASES
    from muse.train.validate import MASK_RATIOS, build_validation, masked_token_metrics, validate, validation_captions

    data = _fake_data(8)
    name = PARAPHRASES[0][1]
    for r in data.records[:2]:  # both sets of one emoji carry a paraphrased name
        r["name"] = name
    data.records[2]["skin_tone"] = "dark skin tone"  # a toned variant is neither row's
    rows = validation_captions(data)
    assert rows["para"] == [(0, PARAPHRASES[0][0]), (1, PARAPHRASES[0][0])]
    assert [i for i, _ in rows["name"]] == [0, 1, 3, 4, 5, 6, 7] and rows["name"][0] == (0, name)
    batches = build_validation(data, text_encoder)
    torch.manual_seed(0)
    model = MaskedTransformer(TINY.base).eval()
    ids = torch.randint(0, 32, (8, 64))
    first = validate(model, batches, ids)
    assert set(first) == {"val_para_ce", "val_para_acc", "val_name_ce", "val_name_acc"}
    assert first == validate(model, batches, ids)  # the same masks every time
    # a model that knows the answer scores 100 %: the metric reads the masked positions' targets
    perfect = masked_token_metrics(_Oracle(ids[batches["name"].indices]), ids[batches["name"].indices],
                                   batches["name"])
    assert perfect["acc"] == 1.0 and len(MASK_RATIOS) == 4


class _Oracle(torch.nn.Module):
    """Logits that put all mass on the true ids, whatever is masked."""

    mask_id = 32

    def __init__(self, ids):
        super().__init__()
        self.ids, self.w = ids, torch.nn.Parameter(torch.zeros(1))

    def prepare_context(self, *args):
        return None

    def forward(self, x, context):
        return torch.nn.functional.one_hot(self.ids, 33).float() * 10, None


def test_caption_bank_rebuilds_when_the_run_changes_recipe(tmp_path, text_encoder):
    data, path = _fake_data(4), tmp_path / "captions.safetensors"
    names = CaptionBank.load_or_build(path, data, lambda: text_encoder, seed=0, recipe="names")
    assert names.recipe == "names" and names.choices.shape == (4, 6)
    assert CaptionBank.load(path).recipe == "names"
    assert CaptionBank.load_or_build(path, data, _no_encoder, seed=0, recipe="names").recipe == "names"
    prompts = CaptionBank.load_or_build(path, data, lambda: text_encoder, seed=0, recipe="prompts")
    assert prompts.recipe == "prompts" and prompts.choices.shape == (4, 12)
    assert CaptionBank.load(path).recipe == "prompts"


def test_run_folder_names_every_file_of_the_layout(tmp_path):
    """The names are those existing runs hold: a rename would orphan their checkpoints and caches."""
    run = RunFolder(tmp_path)
    assert (run.spec, run.captions, run.tokens) == (tmp_path / "run.json", tmp_path / "captions.safetensors",
                                                    tmp_path / "tokens.safetensors")
    base = run.stage("base")
    assert base.root == tmp_path / "base" and base.checkpoint == tmp_path / "base" / "checkpoint"
    assert (base.metrics, base.loss_plot, base.stop) == tuple(tmp_path / "base" / f for f in ("metrics.jsonl",
                                                                                            "loss.png", "STOP"))


def test_run_folder_reads_the_checkpoint_an_interrupted_save_left(tmp_path):
    base = RunFolder(tmp_path).stage("base")
    old = tmp_path / "base" / "checkpoint.old"
    assert base.latest() == base.checkpoint and not base.has_model()  # none yet: where the first save goes
    (old / "model").mkdir(parents=True)  # a save killed between its two renames
    assert base.latest() == old and base.model() == old / "model" and base.has_model()
    (base.checkpoint / "model").mkdir(parents=True)  # a whole checkpoint wins over a leftover .old
    assert base.latest() == base.checkpoint and base.model() == base.checkpoint / "model"


def test_stage_summary_reports_each_trained_stage(tmp_path):
    from muse.train.export import stage_summary

    torch.manual_seed(0)
    vq, images = VQModel(TINY.vq), torch.rand(2, 3, 32, 32)

    def step(net, gen):
        loss, metrics, _ = vq_loss(net, images)
        return loss, metrics, 2

    cfg = LoopConfig(out_dir=RunFolder(tmp_path).stage("tokenizer").root, steps=2, log_every=1)
    train_loop(vq, step, cfg, torch.device("cpu"), Dist(), "t")
    summary = stage_summary(tmp_path)
    assert list(summary) == ["tokenizer"]
    assert summary["tokenizer"]["step"] == 2 and summary["tokenizer"]["last"]["step"] == 2


def _fake_data(n=40):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (n, 64, 64, 3), dtype=np.uint8)
    records = [{"key": f"k{i // 2}", "name": f"emoji {i // 2}", "set": "noto" if i % 2 else "twemoji"} for i in range(n)]
    return CaptionedImages(images, records)


def test_retrieval_metric_is_perfect_on_dataset_images_and_low_for_random():
    data = _fake_data()
    keys = [r["key"] for r in data.records]
    assert topk_accuracy(data.images, keys, data) == {"top1": 1.0, "top5": 1.0}
    prompts = name_prompts(data, 10)
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


def _caption(bank: CaptionBank, j: int) -> torch.Tensor:
    return bank.embeds[bank.offsets[j]:bank.offsets[j + 1]].float()


def _no_encoder():
    raise AssertionError("a cached caption bank must not load the text encoder")


def test_caption_bank_encodes_each_images_captions_once_and_caches_them(tmp_path, text_encoder):
    data, path = _fake_data(6), tmp_path / "captions.safetensors"
    bank = CaptionBank.load_or_build(path, data, lambda: text_encoder, seed=0, per_image=4)
    assert bank.choices.shape == (6, 4) and path.is_file()
    assert bank.offsets[-1] == len(bank.embeds) and bank.embeds.dtype == torch.float16
    for i, record in enumerate(data.records):
        # The exact name (the evaluation prompt) first; images 0 and 1 share a name, so one entry.
        j = int(bank.choices[i, 0])
        assert j == bank.choices[i - i % 2, 0]
        embeds, mask = text_encoder([exact_name(record)])
        assert torch.allclose(_caption(bank, j), embeds[0][mask[0]], rtol=1e-2, atol=1e-2)
    cached = CaptionBank.load_or_build(path, data, _no_encoder, seed=0, per_image=4)
    assert all(torch.equal(getattr(cached, f), getattr(bank, f)) for f in ("embeds", "offsets", "choices"))
    assert torch.equal(CaptionBank.build(data, text_encoder, 4, seed=0).choices, bank.choices)  # seeded draws


def test_caption_bank_draws_one_of_each_images_own_captions(text_encoder):
    bank = CaptionBank.build(_fake_data(6), text_encoder, per_image=4, seed=0)
    idx = torch.tensor([0, 3, 3, 5])
    embeds, mask = bank(idx, torch.Generator().manual_seed(0), torch.device("cpu"))
    assert embeds.shape == (4, mask.shape[1], text_encoder.dim)
    for row, image in enumerate(idx.tolist()):
        n = int(mask[row].sum())
        assert mask[row, :n].all() and not embeds[row, n:].any()  # left-aligned, zero padding
        assert any(torch.equal(embeds[row, :n], _caption(bank, j)) for j in bank.choices[image].tolist())
    again, _ = bank(idx, torch.Generator().manual_seed(0), torch.device("cpu"))
    assert torch.equal(again, embeds)
    # Over many draws an image gets every one of its captions.
    many, _ = bank(torch.zeros(64, dtype=torch.long), torch.Generator().manual_seed(1), torch.device("cpu"))
    assert len({tuple(row.flatten().tolist()) for row in many}) == len(set(bank.choices[0].tolist()))


def test_caption_bank_keeps_an_empty_caption_as_one_blank_position(text_encoder):
    data = CaptionedImages(np.zeros((2, 8, 8, 3), np.uint8), [{"caption": ""}, {"caption": "a red heart"}])
    bank = CaptionBank.build(data, text_encoder, per_image=2, seed=0)
    embeds, mask = bank(torch.tensor([0, 1]), torch.Generator().manual_seed(0), torch.device("cpu"))
    assert mask[0].sum() == 1 and not embeds[0].any() and mask[1].sum() > 1


def test_export_writes_a_pipeline_folder_that_loads_and_generates(tmp_path, tiny_pipe, tiny_weights):
    """A run (seeded from a saved tiny pipeline, as `--init` does) exports to a folder `load_pipeline`
    reads: the run's weights, the fine-tuned decoder when that stage ran, the preview decoder, and the
    checkpoint an interrupted save left."""
    from muse import load_pipeline
    from muse.preview import PreviewConfig, PreviewDecoder
    from muse.text import DEFAULT_TEXT_ENCODER
    from muse.train.export import export
    from muse.train.stages import init_run

    run = RunFolder(tmp_path / "run")
    assert init_run(run.root, tiny_weights) == ["tokenizer", "base", "superres", "base_critic", "superres_critic"]
    assert init_run(run.root, tiny_weights) == []  # stages with a checkpoint are left alone
    base = run.stage("base")
    base.checkpoint.rename(base.root / "checkpoint.old")
    torch.manual_seed(1)
    decoder_tuned = VQModel(TINY.vq)
    decoder_tuned.save_pretrained(run.stage("tokenizer_decoder").checkpoint / "model")
    preview = PreviewDecoder(PreviewConfig(code_dim=TINY.vq.code_dim, downsample=TINY.vq.downsample, hidden=16))
    preview.save_pretrained(run.stage("preview").checkpoint / "model")

    # (dtype=None: the stored float32, not bfloat16 on a CPU that computes it natively)
    pipe = load_pipeline(export(run.root, tmp_path / "weights", defaults={"timesteps": 2}), dtype=None)
    for attr in ("base_model", "superres_model", "base_critic", "superres_critic"):
        got, want = getattr(pipe, attr).state_dict(), getattr(tiny_pipe, attr).state_dict()
        assert all(torch.equal(got[k], want[k]) for k in want), attr
    assert all(torch.equal(v, decoder_tuned.state_dict()[k]) for k, v in pipe.vq.state_dict().items())
    assert pipe.renderer.preview_decoder is not None
    assert pipe.config.text_encoder == DEFAULT_TEXT_ENCODER and pipe.config.defaults == {"timesteps": 2}
    assert pipe("red heart", seed=0)[0].size == (64, 64)


@pytest.mark.slow
def test_stages_export_a_pipeline_and_a_new_run_starts_from_it(tmp_path, capsys):
    """The command line trains every stage on a tiny preset, exports a pipeline that generates, and a
    fresh run seeded from that folder (`--init`, as from the shipped weights/ on a new machine)
    trains on from its weights instead of from random ones."""
    from muse import load_pipeline
    from muse.train.__main__ import main
    from muse.train.stages import model_from_run

    data = _write_emoji_folder(tmp_path / "data")
    run = tmp_path / "run"
    common = ["--data", str(data), "--run", str(run), "--preset", "tiny", "--batch-size", "4"]
    assert main(["all", "--steps", "2", *common]) == 0
    folder = RunFolder(run)
    assert json.loads(folder.spec.read_text())["preset"] == "tiny"
    assert all(folder.stage(s).has_model() for s in ("tokenizer", "base", "superres", "base_critic",
                                                       "superres_critic", "preview"))
    assert load_file(str(folder.tokens))["ids64"].shape == (12, 16, 16)
    bank = CaptionBank.load(folder.captions)
    assert bank.recipe == "prompts" and bank.choices.shape == (12, 12)  # twelve encoded captions per image
    assert main(["export", "--run", str(run), "--out", str(tmp_path / "weights")]) == 0
    pipe = load_pipeline(tmp_path / "weights")
    assert pipe.superres_model.config.cond_spatial and pipe.vq.config.space_to_depth == 2
    assert pipe("emoji 1", seed=0, timesteps=2)[0].size == (64, 64)
    # The evaluation command line, every part of it, on that pipeline and data.
    from muse.eval.__main__ import main as eval_main

    report = tmp_path / "eval.json"
    assert eval_main(["all", "--data", str(data), "--weights", str(tmp_path / "weights"), "--names", "4",
                      "--out", str(report)]) == 0
    assert eval_main(["tokenizer", "--data", str(tmp_path / "nowhere")]) == 2  # a one-line error, no traceback
    figures = json.loads(report.read_text())
    assert {"tokenizer", "superres", "inpaint", "adherence", "floor", "critic"} <= set(figures)
    assert set(figures["critic"]) == {"base", "superres"}  # each critic against its generator's confidence
    assert all(0 <= f["critic_auc"] <= 1 and 0 <= f["confidence_auc"] <= 1 for f in figures["critic"].values())
    assert figures["adherence"]["names"]["prompts"] == 4 and set(figures["adherence"]) == {"names"}
    assert 0 < figures["inpaint"]["inpaint_psnr"] < 60 and 0 < figures["inpaint"]["blur_fill_psnr"] < 60
    assert (tmp_path / "weights" / "samples.png").is_file()
    # the sweep: every control's rows, adherence and diversity, and its picture sheet
    assert eval_main(["sweep", "--data", str(data), "--weights", str(tmp_path / "weights"), "--sweep-names", "2",
                      "--diversity-names", "2", "--sweep-sheet", str(tmp_path / "sweep.png"),
                      "--out", str(report)]) == 0
    rows = json.loads(report.read_text())["sweep"]["rows"]
    assert {"cond_scale=1.0", "cond_scale=8.0", "timesteps=2", "temperature=0.25", "use_critic=True",
            "use_critic=True, critic_noise_scale=4.0"} <= set(rows)
    assert all(r["diversity"] >= 0 and 0 <= r["names_top5"] <= 1 for r in rows.values())
    assert rows["cond_scale=3.0"].get("same_run_as") or rows["timesteps=12"].get("same_run_as")  # defaults once
    assert (tmp_path / "sweep.png").is_file()
    # the orders: every order the model offers at each step count, and one prompt under each
    assert eval_main(["orders", "--data", str(data), "--weights", str(tmp_path / "weights"), "--order-steps", "2", "3",
                      "--order-names", "2", "--order-diversity-names", "2", "--order-superres", "2",
                      "--orders-sheet", str(tmp_path / "orders.png"), "--orders-prompt", "emoji 1",
                      "--out", str(report)]) == 0
    rows = json.loads(report.read_text())["orders"]["rows"]
    assert {(r["order"], r["timesteps"]) for r in rows.values()} == {
        (o, t) for o in ("confidence", "critic", "halton", "random") for t in (2, 3)}
    assert all(r["diversity"] >= 0 and 0 <= r["names_top5"] <= 1 and r["superres_psnr"] > 0 for r in rows.values())
    assert (tmp_path / "orders.png").is_file()

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


def test_export_keeps_a_pipeline_folders_tuned_defaults_unless_given_json(tmp_path):
    """An exported model decodes with the shipped settings (critic on or off, steps, guidance) unless
    told otherwise, instead of falling back to the library's."""
    from muse.loader import DEFAULT_WEIGHTS, PIPELINE_NAME
    from muse.train.__main__ import parse, read_defaults

    shipped = json.loads((DEFAULT_WEIGHTS / PIPELINE_NAME).read_text())["defaults"]
    assert shipped and read_defaults(parse(["export"]).defaults) == shipped
    assert read_defaults('{"timesteps": 4}') == {"timesteps": 4}
    assert read_defaults(str(tmp_path / "nowhere")) == {}


def test_paraphrases_are_held_out_from_every_training_caption(text_encoder):
    """The paraphrase prompts are never a caption the model is trained on, under either recipe: not
    for their own emoji's names, and not in a bank whose records would make one."""
    from muse.data.captions import RECIPES, caption_distribution
    from muse.data.paraphrases import PARAPHRASES

    texts = [text for text, _ in PARAPHRASES]
    assert len(texts) >= 100 and len(set(texts)) == len(texts) and all(t.lower() == t for t in texts)
    for text, name in PARAPHRASES:
        # CLDR's short name and a colour as the prompts recipe would find them; each word of the
        # paraphrase a keyword, so a keyword caption could meet it too
        record = {"name": name, "short_names": [], "set": "noto", "subcategory": "x", "skin_tone": None,
                  "cldr_name": " ".join(text.split()[1:]), "colour": "yellow", "keywords": text.split()[:8]}
        for recipe in RECIPES:
            assert text not in caption_distribution(record, recipe), (text, recipe)
    # a bank never encodes one, not even as the exact name it puts first
    encoded: list[str] = []

    class Recorder:
        dim = 4

        def __call__(self, captions):
            encoded.extend(captions)
            return torch.zeros(len(captions), 3, 4), torch.ones(len(captions), 3, dtype=torch.bool)

    records = [{"key": "k", "name": texts[0], "short_names": ["x"], "set": "noto", "skin_tone": None},
               {"key": "t", "name": "thumbs up sign", "cldr_name": "thumbs up", "short_names": [], "set": "noto",
                "skin_tone": None, "colour": "purple", "keywords": []}]
    for recipe in RECIPES:
        encoded.clear()
        CaptionBank.build(CaptionedImages(np.zeros((2, 8, 8, 3), np.uint8), records), Recorder(), 40, 0, recipe)
        assert encoded and not set(encoded) & set(texts), recipe


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


def test_prompt_rows_keep_each_kind_of_prompt_apart():
    from muse.eval import cldr_prompts, prompt_rows, skin_tone_prompts

    data = _fake_data(8)
    data.records[2]["skin_tone"] = "dark skin tone"
    data.records[4]["cldr_name"] = "a short one"  # emoji 2: its CLDR name differs from its names
    data.records[6]["cldr_name"] = data.records[6]["name"]  # the same as its name: not a CLDR prompt
    assert [p for _, p in name_prompts(data)] == ["emoji 0", "emoji 1", "emoji 2", "emoji 3"]
    assert skin_tone_prompts(data) == [("k1", "emoji 1, dark skin tone")]
    assert cldr_prompts(data) == [("k2", "a short one")]
    assert len(name_prompts(data, 2)) == 2 and name_prompts(data, 2) == name_prompts(data, 2)  # fixed by the seed
    assert set(prompt_rows(data)) == {"names", "skin tones", "cldr"}  # no paraphrased emoji here


def test_inpaint_fidelity_scores_the_hole_against_a_blur_fill(tiny_pipe):
    from muse.eval import blur_fill, centre_square, inpaint_fidelity

    mask = centre_square(64)
    assert mask.sum() == 255 * 32 * 32 and mask[16, 16] == 255 and mask[15, 15] == 0
    # a blur fill of a flat image is exact; of a two-colour one, between its colours
    flat = torch.full((1, 3, 64, 64), 0.25)
    hole = torch.from_numpy(mask > 0)
    assert torch.allclose(blur_fill(flat, hole), flat)
    split = torch.zeros(1, 3, 64, 64)
    split[..., 32:] = 1.0
    filled = blur_fill(split, hole)
    assert torch.equal(filled[..., ~hole], split[..., ~hole]) and 0.3 < filled[..., hole].mean() < 0.7
    scores = inpaint_fidelity(tiny_pipe, _fake_data(4), count=2, timesteps=2)
    assert scores["count"] == 2 and 0 < scores["inpaint_psnr"] < 60 and 0 < scores["blur_fill_psnr"] < 60


def test_guidance_gap_measures_how_far_the_caption_moves_the_prediction(tiny_pipe):
    from muse.eval import guidance_gap

    gap = guidance_gap(tiny_pipe, _fake_data(8), count=4)
    assert set(gap) == {"all masked", "half masked"}
    for figures in gap.values():
        assert figures["images"] == 4 and figures["tokens"] > 0
        assert figures["kl_cond_null"] >= -1e-6 and 0 <= figures["top1_changed_at_3"] <= 1
        assert 0 <= figures["target_prob_at_8"] <= 1 and figures["entropy_null"] > 0
    assert gap["all masked"]["tokens"] == 4 * 64 and gap["half masked"]["tokens"] == 4 * 32


def test_validate_every_sets_how_often_the_held_out_curve_gets_a_point(tmp_path):
    """`--validate-every 0` checks the held-out rows after every step (the GPU run's 30 s curve);
    the default checks them once at the end of a short run."""
    from muse.train.__main__ import main

    data = _write_emoji_folder(tmp_path / "data")
    common = ["--data", str(data), "--preset", "tiny", "--batch-size", "4"]
    assert main(["tokenizer", "--steps", "1", "--run", str(tmp_path / "run"), *common]) == 0
    for name, extra in (("often", ["--validate-every", "0"]), ("default", [])):
        run = tmp_path / name
        shutil.copytree(tmp_path / "run" / "tokenizer", run / "tokenizer")  # the same tokenizer for both
        assert main(["base", "--steps", "3", "--run", str(run), *common, *extra]) == 0

    def points(name):  # the tiny data has names only, so the name row is the curve
        lines = (tmp_path / name / "base" / "metrics.jsonl").read_text().splitlines()
        return [json.loads(line)["step"] for line in lines if "val_name_acc" in line]

    assert points("often") == [1, 2, 3] and points("default") == [3]
