"""Training losses. Pure functions of (model, batch, generator): no optimiser, no I/O."""

from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn.functional as F

from ..guidance import GuidedLogits, guidance_context, is_guided
from ..schedules import ScheduleLike, training_mask_ratio
from ..transformer import MaskedTransformer
from ..vq import VQModel


def vq_loss(vq: VQModel, images: torch.Tensor) -> tuple[torch.Tensor, dict[str, float], torch.Tensor]:
    """Reconstruction (L1 + MSE) plus codebook/commitment loss on images (B, 3, H, W) in [0, 1].

    No perceptual or adversarial term: LPIPS needs pretrained VGG weights that cannot be fetched
    offline, and a GAN would not pay for itself in a few CPU hours on flat emoji art; MSE is
    what PSNR measures, L1 keeps edges sharp. Returns (loss, metrics, pre-quantisation z).
    """
    recon, _, qloss, z = vq(images)
    mse = F.mse_loss(recon, images)
    l1 = (recon - images).abs().mean()
    loss = l1 + mse + qloss
    psnr = -10 * math.log10(max(mse.item(), 1e-10))
    return loss, {"loss": loss.item(), "mse": mse.item(), "psnr": psnr, "qloss": qloss.item()}, z


def random_mask(batch: int, seq_len: int, schedule: ScheduleLike, generator: torch.Generator,
                device: torch.device) -> torch.Tensor:
    """MaskGIT training masks: a schedule(U(0,1)) fraction of each row, at least one: bool (B, N)."""
    ratio = training_mask_ratio(schedule, batch, generator).to(device)
    count = (ratio * seq_len).round().clamp(min=1)
    ranks = torch.rand(batch, seq_len, generator=generator, device=generator.device).argsort(dim=-1).argsort(dim=-1)
    ranks = ranks.to(device)
    return ranks < count[:, None]


def drop_text(text_mask: torch.Tensor, drop_prob: float, generator: torch.Generator) -> torch.Tensor:
    """Classifier-free guidance dropout: whole captions dropped with `drop_prob`: (B, L) -> (B, L)."""
    keep = torch.rand(text_mask.shape[0], generator=generator, device=generator.device) >= drop_prob
    return text_mask & keep.to(text_mask.device)[:, None]


def maskgit_loss(model: MaskedTransformer, ids: torch.Tensor, text_embeds: torch.Tensor, text_mask: torch.Tensor,
                 generator: torch.Generator, cond_ids: Optional[torch.Tensor] = None, cond_drop_prob: float = 0.1,
                 self_cond_prob: float = 0.9, schedule: ScheduleLike = "cosine",
                 critic_weight: float = 1.0, net: Optional[torch.nn.Module] = None) -> tuple[torch.Tensor, dict]:
    """Masked-token cross-entropy on ids (B, N) (plus the self-critic loss when the model has that head).

    `net` is the module to call for the gradient pass (a DDP wrapper in distributed runs).
    """
    net = net or model
    b, n = ids.shape
    mask = random_mask(b, n, schedule, generator, ids.device)
    x = torch.where(mask, torch.full_like(ids, model.mask_id), ids)
    text_mask = drop_text(text_mask, cond_drop_prob, generator)
    context_args = (text_embeds, text_mask, cond_ids)
    self_cond = None
    if model.config.self_cond and torch.rand((), generator=generator, device=generator.device).item() < self_cond_prob:
        with torch.no_grad():
            _, self_cond = model(x, model.prepare_context(*context_args))
    logits, embed = net(x, model.prepare_context(*context_args), self_cond_embed=self_cond)
    ce = F.cross_entropy(logits[mask].float(), ids[mask])
    acc = (logits[mask].argmax(-1) == ids[mask]).float().mean()
    metrics = {"ce": ce.item(), "acc": acc.item()}
    loss = ce
    if model.config.self_critic:
        sampled = sample_for_critic(logits.detach(), generator)
        critic_in = torch.where(mask, sampled, ids)
        _, critic_embed = net(critic_in, model.prepare_context(*context_args))
        bce = F.binary_cross_entropy_with_logits(model.critic_scores(critic_embed).float(), (critic_in != ids).float())
        loss = loss + critic_weight * bce
        metrics["critic_bce"] = bce.item()
    metrics["loss"] = loss.item()
    return loss, metrics


def sample_for_critic(logits: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Sample ids (B, N) from logits (B, N, V), each row at its own random temperature in [0.05, 1], as the
    critic will see them at inference, where the temperature anneals over the steps (the critic's training
    and `muse.eval.critic_ranking`)."""
    temperature = torch.rand(logits.shape[0], 1, 1, generator=generator, device=generator.device).clamp(min=0.05)
    u = torch.rand(logits.shape, generator=generator, device=generator.device).clamp(1e-20, 1 - 1e-7)
    return (logits.float() / temperature.to(logits.device) - torch.log(-torch.log(u.to(logits.device)))).argmax(dim=-1)


def guided_logits(model: MaskedTransformer, ids: torch.Tensor, text_embeds: torch.Tensor, text_mask: torch.Tensor,
                  cond_ids: Optional[torch.Tensor], cond_scale: float) -> torch.Tensor:
    """The generator's logits (B, N, V) under classifier-free guidance against the null context, as the
    sampler computes them (`muse.runner`)."""
    cond = model.prepare_context(text_embeds, text_mask, cond_ids)
    uncond = model.prepare_context(torch.zeros_like(text_embeds), torch.zeros_like(text_mask), cond_ids) \
        if is_guided(cond_scale) else cond
    return GuidedLogits(model, guidance_context(cond, uncond, cond_scale), cond_scale)(ids)


def critic_loss(generator_model: MaskedTransformer, critic: MaskedTransformer, ids: torch.Tensor,
                text_embeds: torch.Tensor, text_mask: torch.Tensor, generator: torch.Generator,
                cond_ids: Optional[torch.Tensor] = None, cond_drop_prob: float = 0.1,
                schedule: ScheduleLike = "cosine", net: Optional[torch.nn.Module] = None,
                cond_scale: float = 1.0) -> tuple[torch.Tensor, dict]:
    """Token-critic BCE: which of the frozen generator's sampled tokens differ from the data (B, N).

    The loss is taken over the sampled tokens only. The sampler asks the critic about nothing else (the
    tokens it has just sampled, `muse.sampling`), and a loss over every position would also teach it to
    guess which tokens were sampled at all, a question the sampler never asks. The generator samples
    under guidance at `cond_scale`, as the sampler's does; a `confidence_input` critic also reads the
    generator's log-probability of each sampled token (0 for the known ones)."""
    net = net or critic
    b, n = ids.shape
    mask = random_mask(b, n, schedule, generator, ids.device)
    text_mask = drop_text(text_mask, cond_drop_prob, generator)
    with torch.no_grad():
        x = torch.where(mask, torch.full_like(ids, generator_model.mask_id), ids)
        logits = guided_logits(generator_model, x, text_embeds, text_mask, cond_ids, cond_scale)
        sampled = sample_for_critic(logits, generator)
        critic_in = torch.where(mask, sampled, ids)
        features = None
        if critic.config.confidence_input:
            log_probs = logits.float().log_softmax(-1).gather(-1, sampled[..., None]).squeeze(-1)
            features = torch.where(mask, log_probs, torch.zeros_like(log_probs))
    labels = (critic_in != ids)[mask].float()
    scores, _ = net(critic_in, critic.prepare_context(text_embeds, text_mask, cond_ids), token_features=features)
    scores = scores[mask].float()
    bce = F.binary_cross_entropy_with_logits(scores, labels)
    acc = ((scores > 0).float() == labels).float().mean()
    return bce, {"loss": bce.item(), "acc": acc.item(), "wrong_frac": labels.mean().item()}
