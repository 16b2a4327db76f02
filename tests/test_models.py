"""Networks, guidance, text encoder and weights I/O on tiny random models."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
import torch

from muse.guidance import GuidedCritic, GuidedLogits, guidance_context
from muse.hub import WeightsError
from muse.text import TextEncoder, packaged_minilm
from muse.transformer import MaskedTransformer
from muse.vq import VQModel

from .conftest import TINY


def _context(model, b=2, length=5, seed=0, cond=None):
    gen = torch.Generator().manual_seed(seed)
    embeds = torch.randn(b, length, 384, generator=gen)
    mask = torch.ones(b, length, dtype=torch.bool)
    mask[1, 3:] = False
    return model.prepare_context(embeds, mask, cond), embeds, mask


def test_vq_shapes_at_both_resolutions():
    vq = VQModel(TINY.vq).eval()
    for size in (32, 64):
        images = torch.rand(2, 3, size, size)
        ids = vq.encode(images)
        assert ids.shape == (2, size // 4, size // 4) and ids.max() < 32
        out = vq.decode(ids)
        assert out.shape == (2, 3, size, size) and 0 <= out.min() and out.max() <= 1
    with pytest.raises(ValueError, match="mask tokens"):
        vq.decode(torch.full((1, 8, 8), 32))
    with pytest.raises(ValueError, match="multiples"):
        vq.encode(torch.rand(1, 3, 30, 30))


def test_dead_codes_restart_onto_encoder_outputs():
    vq = VQModel(TINY.vq)
    vq.quantizer.usage[:5] = 0.0
    z = torch.randn(2, TINY.vq.code_dim, 4, 4)
    assert vq.quantizer.restart_dead_codes(z, threshold=0.5) == 5
    assert (vq.quantizer.usage >= 0.5).all()


def test_batched_guidance_equals_two_passes():
    torch.manual_seed(0)
    model = MaskedTransformer(TINY.base).eval()
    cond, embeds, mask = _context(model)
    null = model.prepare_context(torch.zeros_like(embeds), torch.zeros_like(mask))
    ids = torch.randint(0, 33, (2, 64))
    with torch.no_grad():
        c, _ = model(ids, cond)
        u, _ = model(ids, null)
        for scale in (0.0, 3.0, 7.5):
            guided = GuidedLogits(model, guidance_context(cond, null, scale), scale)(ids)
            assert torch.allclose(guided, u + (c - u) * scale, atol=1e-5)
        one = GuidedLogits(model, guidance_context(cond, null, 1.0), 1.0)
        assert one.context is cond  # scale 1 runs no unconditional half
        assert torch.allclose(one(ids), c, atol=1e-6)


@pytest.mark.parametrize("depth", [1, 2])
@pytest.mark.parametrize("self_cond", [False, True])
def test_logits_at_positions_and_shared_first_layer_equal_the_full_forward(depth, self_cond):
    """The sampler asks for the masked positions' logits only, and guidance runs its halves' first
    self-attention once: both must give the full two-half forward's logits, whatever the depth,
    with a null or a negative-prompt unconditional half, on consecutive self-conditioned steps."""
    torch.manual_seed(0)
    model = MaskedTransformer(replace(TINY.base, self_cond=self_cond, depth=depth)).eval()
    cond, embeds, mask = _context(model)
    null = model.prepare_context(torch.zeros_like(embeds), torch.zeros_like(mask))
    negative, _, _ = _context(model, seed=1)
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(0, 33, (2, 64), generator=gen)
    positions = torch.stack([torch.randperm(64, generator=gen)[:10].sort().values for _ in range(2)])
    with torch.no_grad():
        for scale, uncond in ((1.0, null), (3.0, null), (3.0, negative)):
            context = guidance_context(cond, uncond, scale)
            rows = 1 if scale == 1 else 2
            # The plain way: every row of ids repeated for each half, every position computed.
            plain, plain_embed = model(ids.repeat(rows, 1), context)
            shared, shared_embed = model(ids, context, repeat=rows)
            assert torch.allclose(shared, plain, atol=1e-5) and torch.allclose(shared_embed, plain_embed, atol=1e-5)
            part, _ = model(ids, context, positions=positions, repeat=rows)
            assert part.shape == (2 * rows, 10, 32)
            assert torch.allclose(part, plain.gather(1, positions.repeat(rows, 1)[..., None].expand(-1, -1, 32)), atol=1e-5)

            full_fn, part_fn = GuidedLogits(model, context, scale), GuidedLogits(model, context, scale)
            for _ in range(2):  # the second step carries a self-conditioning embedding per half
                full, part = full_fn(ids), part_fn(ids, positions)
                if self_cond:  # it needs every embedding: it answers every position
                    assert torch.allclose(part, full, atol=1e-5)
                else:
                    assert torch.allclose(part, full.gather(1, positions[..., None].expand(-1, -1, 32)), atol=1e-5)
    with pytest.raises(ValueError, match="rows of ids"):
        model(ids, guidance_context(cond, null, 3.0))  # two halves of context for one of ids


def test_empty_context_attends_only_null_and_padding_is_ignored():
    torch.manual_seed(0)
    model = MaskedTransformer(TINY.base).eval()
    ids = torch.randint(0, 33, (1, 64))
    a = model.prepare_context(torch.randn(1, 4, 384), torch.zeros(1, 4, dtype=torch.bool))
    b = model.prepare_context(torch.randn(1, 9, 384), torch.zeros(1, 9, dtype=torch.bool))
    with torch.no_grad():
        assert torch.allclose(model(ids, a)[0], model(ids, b)[0], atol=1e-5)
        # Padding after real tokens does not change the output.
        e = torch.randn(1, 3, 384)
        short = model.prepare_context(e, torch.ones(1, 3, dtype=torch.bool))
        padded = model.prepare_context(torch.cat((e, torch.randn(1, 4, 384)), 1),
                                       torch.tensor([[True] * 3 + [False] * 4]))
        assert torch.allclose(model(ids, short)[0], model(ids, padded)[0], atol=1e-5)


def test_superres_conditioning_ids_reach_the_transformer():
    torch.manual_seed(0)
    model = MaskedTransformer(TINY.superres).eval()
    ids = torch.randint(0, 33, (2, 256))
    cond_a = torch.randint(0, 32, (2, 64))
    cond_b = cond_a.clone()
    cond_b[:, 10] = (cond_b[:, 10] + 1) % 32
    with torch.no_grad():
        la = model(ids, _context(model, cond=cond_a)[0])[0]
        lb = model(ids, _context(model, cond=cond_b)[0])[0]
    assert not torch.allclose(la, lb)
    with pytest.raises(ValueError, match="cond_ids"):
        _context(model)


def test_spatial_conditioning_puts_each_parent_under_its_children():
    """cond_spatial: high-res position (2r+i, 2c+j) starts from low-res token (r, c) and, through a 3x3
    convolution, its neighbours; changing one low-res token changes only the 6x6 high-res patch
    around it."""
    torch.manual_seed(0)
    model = MaskedTransformer(TINY.superres).eval()
    cond = torch.randint(0, 32, (1, 64))
    changed = cond.clone()
    changed[0, 3 * 8 + 5] = (changed[0, 3 * 8 + 5] + 1) % 32  # low-res (3, 5)
    with torch.no_grad():
        a = model.prepare_context(torch.randn(1, 4, 384), torch.ones(1, 4, dtype=torch.bool), cond).spatial
        b = model.prepare_context(torch.randn(1, 4, 384), torch.ones(1, 4, dtype=torch.bool), changed).spatial
    a, b = a.view(16, 16, -1), b.view(16, 16, -1)
    assert torch.equal(a[6, 10], a[7, 11]) and torch.equal(a[6, 10], a[6, 11])  # four children, one parent
    differs = (a - b).abs().amax(-1) > 0
    expected = torch.zeros(16, 16, dtype=torch.bool)
    expected[4:10, 8:14] = True  # parents (2..4, 4..6) -> children rows 4..9, columns 8..13
    assert torch.equal(differs, expected)


def test_spatial_superres_shares_guidance_halves_and_answers_at_positions():
    torch.manual_seed(0)
    model = MaskedTransformer(TINY.superres).eval()
    cond_ids = torch.randint(0, 32, (2, 64))
    cond, embeds, mask = _context(model, cond=cond_ids)
    negative, _, _ = _context(model, seed=1, cond=cond_ids)
    ids = torch.randint(0, 33, (2, 256))
    positions = torch.stack([torch.randperm(256)[:12].sort().values for _ in range(2)])
    with torch.no_grad():
        context = guidance_context(cond, negative, 3.0)
        plain = torch.cat((model(ids, cond)[0], model(ids, negative)[0]))
        assert torch.allclose(model(ids, context, repeat=2)[0], plain, atol=1e-5)
        part, _ = model(ids, context, positions=positions, repeat=2)
        assert torch.allclose(part, plain.gather(1, positions.repeat(2, 1)[..., None].expand(-1, -1, 32)), atol=1e-5)
    other, _, _ = _context(model, seed=1, cond=(cond_ids + 1) % 32)
    with pytest.raises(ValueError, match="share their low-res"):
        guidance_context(cond, other, 3.0)


def test_pooled_caption_token_follows_the_caption():
    """text_pooled adds the mean-pooled caption as one more context token: it follows the caption,
    ignores padding, and a dropped caption leaves only the null key."""
    torch.manual_seed(0)
    model = MaskedTransformer(TINY.base).eval()
    e = torch.randn(1, 3, 384)
    ctx = model.prepare_context(e, torch.ones(1, 3, dtype=torch.bool))
    assert ctx.mask.shape[-1] == 1 + 3 + 1 and bool(ctx.mask.all())
    dropped = model.prepare_context(e, torch.zeros(1, 3, dtype=torch.bool))
    assert dropped.is_null


def test_critic_and_self_critic_heads():
    torch.manual_seed(0)
    critic = MaskedTransformer(TINY.base_critic).eval()
    gen = MaskedTransformer(replace(TINY.base, self_critic=True, self_cond=True)).eval()
    ids = torch.randint(0, 32, (2, 64))
    log_probs = -torch.rand(2, 64) * (torch.rand(2, 64) < 0.5)  # sampled tokens' log-probabilities, 0 at known ones
    with torch.no_grad():
        ctx = _context(critic)[0]
        assert GuidedCritic(critic, ctx, 1.0)(ids, None, log_probs).shape == (2, 64)
        reader = MaskedTransformer(replace(TINY.base_critic, confidence_input=True)).eval()
        with pytest.raises(ValueError, match="log-probability"):
            GuidedCritic(reader, ctx, 1.0)(ids)  # a confidence critic without what it reads: a clear error
        ctx = _context(gen)[0]
        assert GuidedCritic(gen, ctx, 1.0)(ids).shape == (2, 64)
        fn = GuidedLogits(gen, ctx, 1.0)
        first = fn(ids)
        assert fn.self_cond_embed is not None and not torch.allclose(first, fn(ids))  # self-conditioning used

        # At the positions the sampler reads, with guidance: the full scores there.
        positions = torch.tensor([[0, 5, 9, 63], [1, 2, 3, 40]])
        for model in (critic, gen, reader):
            cond, embeds, mask = _context(model)
            null = model.prepare_context(torch.zeros_like(embeds), torch.zeros_like(mask))
            fn = GuidedCritic(model, guidance_context(cond, null, 3.0), 3.0)
            full, part = fn(ids, None, log_probs), fn(ids, positions, log_probs)
            assert part.shape == (2, 4) and torch.allclose(part, full.gather(1, positions), atol=1e-5)


def test_a_confidence_critic_starts_as_the_confidence_and_learns_on_top_of_it():
    """Untrained, a `confidence_input` critic's score is exactly -log p (its head starts at zero), under
    guidance too; its output head then adds what the log-probability misses."""
    torch.manual_seed(0)
    critic = MaskedTransformer(replace(TINY.base_critic, confidence_input=True)).eval()
    assert not critic.to_logits.weight.any()
    ids = torch.randint(0, 32, (2, 64))
    log_probs = -torch.rand(2, 64) * 5
    cond, embeds, mask = _context(critic)
    null = critic.prepare_context(torch.zeros_like(embeds), torch.zeros_like(mask))
    with torch.no_grad():
        for fn in (GuidedCritic(critic, cond, 1.0), GuidedCritic(critic, guidance_context(cond, null, 3.0), 3.0)):
            assert torch.allclose(fn(ids, None, log_probs), -log_probs, atol=1e-5)
        critic.to_logits.weight.normal_()
        assert not torch.allclose(GuidedCritic(critic, cond, 1.0)(ids, None, log_probs), -log_probs, atol=1e-3)


def test_text_encoder_loads_packaged_minilm_offline_and_masks_padding(text_encoder, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert packaged_minilm() is not None and text_encoder.dim == 384
    embeds, mask = text_encoder(["a red apple", "a grinning face with big eyes and a smile", ""])
    assert mask[0].sum() < mask[1].sum() and not mask[2].any()
    assert (embeds[0][~mask[0]] == 0).all() and (embeds[2] == 0).all()
    alone, alone_mask = text_encoder(["a red apple"])
    n = int(alone_mask.sum())
    assert torch.allclose(alone[0, :n], embeds[0, :n], atol=1e-4)
    long, long_mask = text_encoder(["word " * 100_000])
    assert long.shape[1] == text_encoder.max_length  # truncated to the encoder's limit


def test_text_encoder_unknown_name_offline_is_clear_error(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ValueError, match="could not load text encoder"):
        TextEncoder("nobody/no-such-encoder")


# ----- weights I/O -------------------------------------------------------------------------

def _components():
    torch.manual_seed(1)
    return {
        "vq": VQModel(TINY.vq),
        "generator": MaskedTransformer(replace(TINY.base, self_critic=True, self_cond=True)),
        "superres": MaskedTransformer(replace(TINY.superres, cond_spatial=False)),
        "critic": MaskedTransformer(TINY.base_critic),
    }


@pytest.mark.parametrize("name", ["vq", "generator", "superres", "critic"])
def test_save_load_round_trip_is_bit_identical(name, tmp_path):
    model = _components()[name]
    model.save_pretrained(tmp_path)
    loaded = type(model).from_pretrained(tmp_path)
    assert loaded.config == model.config
    a, b = model.state_dict(), loaded.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert json.loads((tmp_path / "config.json").read_text())["config_class"] == type(model.config).__name__


def test_pickle_file_is_refused(tmp_path):
    model = _components()["critic"]
    model.save_pretrained(tmp_path)
    torch.save(model.state_dict(), tmp_path / "model.safetensors")
    with pytest.raises(WeightsError, match="pickle"):
        MaskedTransformer.from_pretrained(tmp_path)
    (tmp_path / "model.safetensors").unlink()
    torch.save(model.state_dict(), tmp_path / "pytorch_model.bin")
    with pytest.raises(WeightsError, match="pickle formats are never loaded"):
        MaskedTransformer.from_pretrained(tmp_path)


def test_wrong_shape_and_truncated_files_are_refused(tmp_path):
    parts = _components()
    parts["critic"].save_pretrained(tmp_path / "a")
    parts["generator"].save_pretrained(tmp_path / "b")
    # Config of one model, weights of another: a loud error, never a partial load.
    (tmp_path / "b" / "config.json").write_text((tmp_path / "a" / "config.json").read_text())
    with pytest.raises(WeightsError, match="do not match"):
        MaskedTransformer.from_pretrained(tmp_path / "b")
    data = (tmp_path / "a" / "model.safetensors").read_bytes()
    (tmp_path / "a" / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(WeightsError, match="truncated|corrupt"):
        MaskedTransformer.from_pretrained(tmp_path / "a")


def test_absurd_config_is_refused_before_allocating(tmp_path):
    cfg = {"config_class": "TransformerConfig", "num_tokens": 512, "seq_len": 64, "dim": 16384, "depth": 256}
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(WeightsError, match="parameters|must be"):
        MaskedTransformer.from_pretrained(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"config_class": "VQConfig", "codebook_size": -3}))
    with pytest.raises(WeightsError, match="codebook_size"):
        VQModel.from_pretrained(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"config_class": "VQConfig", "evil": 1}))
    with pytest.raises(WeightsError, match="unknown keys"):
        VQModel.from_pretrained(tmp_path)


def test_missing_model_and_offline_hub_are_clear_errors(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(WeightsError, match="no model folder"):
        VQModel.from_pretrained(tmp_path / "nothing" / "here")
    with pytest.raises(WeightsError, match="HF_HUB_OFFLINE"):
        VQModel.from_pretrained("nobody/no-such-muse-model")
