"""The masked transformer (MUSE / MaskGIT), the token critic and their attention blocks.

Networks only: sampling lives in `muse.sampling`, guidance in `muse.guidance`. The text context
is projected once per request (`prepare_context`), not once per decoding step.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from typing import Optional, Sequence, Union

import torch
import torch.nn.functional as F
from torch import nn

from .config import TransformerConfig
from .hub import PretrainedMixin
from .ops import gather_positions, l2norm


def native_bf16(device: Union[str, torch.device]) -> bool:
    """Whether `device` computes bfloat16 natively: a CUDA GPU with bf16, an x86 CPU with AVX512-BF16 or AMX."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    return device.type == "cpu" and _cpu_native_bf16()


@functools.lru_cache(maxsize=None)
def _cpu_native_bf16() -> bool:
    try:
        caps = torch.cpu.get_capabilities()
    except (AttributeError, RuntimeError):
        return False
    return bool(caps.get("avx512_bf16") or caps.get("amx_bf16"))


def inference_dtype(device: Union[str, torch.device]) -> torch.dtype:
    """The transformers' dtype for inference on `device`: bfloat16 where it is native (about twice the
    matrix throughput of float32 there), else float32. MUSE_DTYPE=float32 (or bfloat16) overrides."""
    forced = os.environ.get("MUSE_DTYPE", "").strip().lower()
    if forced:
        if forced not in ("float32", "bfloat16"):
            raise ValueError(f"MUSE_DTYPE must be 'float32' or 'bfloat16', got {forced!r}")
        return getattr(torch, forced)
    return torch.bfloat16 if native_bf16(device) else torch.float32


class LayerNorm(nn.Module):
    """LayerNorm with a learned gain and no bias (as in the reference)."""

    def __init__(self, dim: int):
        super().__init__()
        self.gamma = nn.Parameter(torch.ones(dim))
        self.register_buffer("beta", torch.zeros(dim), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(x, x.shape[-1:], self.gamma, self.beta)


class FeedForward(nn.Module):
    """LayerNorm, GEGLU MLP, LayerNorm, out projection.

    The parts are registered as "0", "1", "3" and "4", the parameter names of the reference's
    nn.Sequential (its index 2 is the parameter-free GEGLU, computed inline here), so weights in
    that layout load unchanged. The input projection runs as two matmuls over the halves of its
    weight, so that the value and the gate come out contiguous: erf-GELU on a strided half of one
    wide output is about three times slower on CPU than on a contiguous one.
    """

    def __init__(self, dim: int, mult: int):
        super().__init__()
        inner = int(dim * mult * 2 / 3)  # GEGLU: keep the parameter count of a plain mult-x MLP
        for name, part in (("0", LayerNorm(dim)), ("1", nn.Linear(dim, inner * 2, bias=False)),
                           ("3", LayerNorm(inner)), ("4", nn.Linear(inner, dim, bias=False))):
            self.add_module(name, part)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        norm, proj_in, inner_norm, proj_out = (self._modules[k] for k in ("0", "1", "3", "4"))
        x = norm(x)
        value_w, gate_w = proj_in.weight.chunk(2)  # row halves of a row-major weight: contiguous views
        return proj_out(inner_norm(F.gelu(F.linear(x, gate_w)) * F.linear(x, value_w)))


class Attention(nn.Module):
    """Multi-head attention with a learned null key/value and query/key l2 normalisation.

    The null key/value lets a query attend to "nothing" when the context is empty or dropped
    (classifier-free guidance); cos-sim attention with learned scales keeps logits bounded.
    """

    def __init__(self, dim: int, heads: int, dim_head: int, scale: float):
        super().__init__()
        self.heads, self.dim_head, self.scale = heads, dim_head, scale
        inner = heads * dim_head
        self.norm = LayerNorm(dim)
        self.null_kv = nn.Parameter(torch.randn(2, heads, 1, dim_head))
        self.to_q = nn.Linear(dim, inner, bias=False)
        self.to_kv = nn.Linear(dim, inner * 2, bias=False)
        self.q_scale = nn.Parameter(torch.ones(dim_head))
        self.k_scale = nn.Parameter(torch.ones(dim_head))
        self.to_out = nn.Linear(inner, dim, bias=False)

    def _split(self, t: torch.Tensor) -> torch.Tensor:
        b, n, _ = t.shape
        return t.view(b, n, self.heads, self.dim_head).transpose(1, 2)  # (B, H, N, Dh)

    def project_kv(self, source: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Keys and values of `source` (B, L, D), null pair first: two (B, H, 1 + L, Dh)."""
        k, v = self.to_kv(source).chunk(2, dim=-1)
        k, v = self._split(k), self._split(v)
        b = source.shape[0]
        nk, nv = (t.unsqueeze(0).expand(b, -1, -1, -1) for t in self.null_kv)
        k = torch.cat((nk, k), dim=2)
        v = torch.cat((nv, v), dim=2)
        return l2norm(k) * self.k_scale, v

    def forward(self, x: torch.Tensor, kv: Optional[tuple[torch.Tensor, torch.Tensor]] = None,
                mask: Optional[torch.Tensor] = None, positions: Optional[torch.Tensor] = None) -> torch.Tensor:
        """x: (B, N, D); kv: precomputed context keys/values; mask: bool (B, 1, 1, 1 + L).

        positions: long (B, M), self-attention only: queries at those positions alone, keys and values
        from every token; the output is then (B, M, D).
        """
        x = self.norm(x)
        if kv is None:
            kv = self.project_kv(x)
        if positions is not None:
            x = gather_positions(x, positions)
        b, n, _ = x.shape
        q = l2norm(self._split(self.to_q(x))) * self.q_scale
        k, v = kv
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=self.scale)  # (B, H, N, Dh)
        return self.to_out(out.transpose(1, 2).reshape(b, n, -1))

    def attend(self, x: torch.Tensor, contexts: Sequence["PreparedContext"], layer: int) -> torch.Tensor:
        """Cross-attention of x (R, N, D), whose rows are each context's rows in turn (`context.batch` of
        them), to that context's keys and values of `layer`: (R, N, D).

        A context's last `null_rows` rows attend only the null key (the null context of guidance): a
        softmax over one key is 1, so their output is the null value whatever the query, and their
        projections and attention are skipped. Contexts of one key length attend in one call; a row never
        meets another context's keys, nor padding (a padded softmax sums in another order, which would make
        a row's output depend on the batch it runs in).
        """
        spans, start = [], 0  # per context: its first row, the end of its attending rows, its end
        for c in contexts:
            spans.append((start, start + c.batch - c.null_rows, start + c.batch))
            start += c.batch
        if start != x.shape[0]:
            raise ValueError(f"{x.shape[0]} rows for contexts of {start} rows")
        live = [(c, x[a:b]) for c, (a, b, _) in zip(contexts, spans) if b > a]
        head = x[:0]
        if live:
            rows = live[0][1] if len(live) == 1 else torch.cat([part for _, part in live])
            rows = self.norm(rows)
            b, n, _ = rows.shape
            q = l2norm(self._split(self.to_q(rows))) * self.q_scale  # (A, H, N, Dh)
            out = self._attend_by_length(q, [(c, part.shape[0]) for c, part in live], layer)
            head = self.to_out(out.transpose(1, 2).reshape(b, n, -1))
        if not any(c.null_rows for c in contexts):
            return head
        null = self.to_out(self.null_kv[1].reshape(1, 1, -1).to(x.dtype))  # (1, 1, D), heads merged
        pieces, done = [], 0
        for a, b, end in spans:
            if b > a:
                pieces.append(head[done:done + b - a])
                done += b - a
            if end > b:
                pieces.append(null.expand(end - b, x.shape[1], -1))
        return torch.cat(pieces) if len(pieces) > 1 else pieces[0]

    def _attend_by_length(self, q: torch.Tensor, parts: list[tuple["PreparedContext", int]],
                          layer: int) -> torch.Tensor:
        """q (A, H, N, Dh), the attending rows of `parts` (context, rows) in turn -> attention outputs, same shape:
        one call per key length, rows of equal length stacked."""
        lengths = [c.mask.shape[-1] for c, _ in parts]
        if len(set(lengths)) == 1:
            k, v, mask = _stack_layer([c for c, _ in parts], layer)
            return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=self.scale)
        starts = [0]
        for _, rows in parts:
            starts.append(starts[-1] + rows)
        out = torch.empty_like(q)
        for length in dict.fromkeys(lengths):
            group = [i for i, n in enumerate(lengths) if n == length]
            k, v, mask = _stack_layer([parts[i][0] for i in group], layer)
            q_group = torch.cat([q[starts[i]:starts[i + 1]] for i in group])
            o = F.scaled_dot_product_attention(q_group, k, v, attn_mask=mask, scale=self.scale)
            done = 0
            for i in group:
                out[starts[i]:starts[i + 1]] = o[done:done + starts[i + 1] - starts[i]]
                done += starts[i + 1] - starts[i]
        return out


def _stack_layer(contexts: list["PreparedContext"], layer: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Keys, values (A, H, 1 + L, Dh) and mask (A, 1, 1, 1 + L) of `layer` for contexts of one key length."""
    if len(contexts) == 1:
        (k, v), mask = contexts[0].kv[layer], contexts[0].mask
        return k, v, mask
    return (torch.cat([c.kv[layer][0] for c in contexts]), torch.cat([c.kv[layer][1] for c in contexts]),
            torch.cat([c.mask for c in contexts]))


class Block(nn.Module):
    def __init__(self, cfg: TransformerConfig):
        super().__init__()
        self.attn = Attention(cfg.dim, cfg.heads, cfg.dim_head, cfg.attn_scale)
        self.cross_attn = Attention(cfg.dim, cfg.heads, cfg.dim_head, cfg.attn_scale)
        self.ff = FeedForward(cfg.dim, cfg.ff_mult)

    def forward(self, x: torch.Tensor, contexts: Sequence["PreparedContext"], layer: int,
                positions: Optional[torch.Tensor] = None, expand: Optional[torch.Tensor] = None) -> torch.Tensor:
        """x: (U, N, D) -> (R, N or M, D), cross-attending `contexts` (each context's rows in turn, R in all)
        at this block's `layer`.

        positions (U, M): compute only those tokens' outputs (every token still serves as a key).
        expand: long (R,), the row of x each context row reads (guidance: the conditional and unconditional
        blocks of a request read the same ids). Self-attention does not see the context, so it runs once
        per row of ids and is repeated before cross-attention. None: R = U, row for row.
        """
        out = self.attn(x, positions=positions)
        x = (x if positions is None else gather_positions(x, positions)) + out
        if expand is not None:
            x = x.index_select(0, expand)
        x = x + self.cross_attn.attend(x, contexts, layer)
        return x + self.ff(x)


@dataclass
class PreparedContext:
    """Per-request cross-attention inputs: every layer's keys/values and the attention mask."""

    kv: list[tuple[torch.Tensor, torch.Tensor]]  # per layer, two (B - null_rows, H, 1 + L, Dh)
    mask: torch.Tensor  # bool (B - null_rows, 1, 1, 1 + L), True = attend
    null_rows: int = 0  # trailing rows that attend only the null key: no keys/values stored for them
    # Spatially aligned conditioning (cond_spatial): (B', N, D), added to the token embeddings. One row
    # per row of ids: guidance halves share their low-res ids, so they share these rows too.
    spatial: Optional[torch.Tensor] = None

    @property
    def batch(self) -> int:
        return self.mask.shape[0] + self.null_rows

    @property
    def is_null(self) -> bool:
        """Every row attends only the null key (one host sync: call once per request, not per step)."""
        return not bool(self.mask[..., 1:].any())

    def repeat(self, times: int) -> "PreparedContext":
        """Each row repeated `times` times (row-major), for several images per prompt."""
        if self.null_rows:
            raise ValueError("repeat the contexts before combining them for guidance")
        spatial = None if self.spatial is None else self.spatial.repeat_interleave(times, 0)
        return PreparedContext([(k.repeat_interleave(times, 0), v.repeat_interleave(times, 0)) for k, v in self.kv],
                               self.mask.repeat_interleave(times, 0), spatial=spatial)

    @staticmethod
    def cat(contexts: list["PreparedContext"]) -> "PreparedContext":
        """Stack guidance halves (blocks of rows over the same ids) along the batch; all must have the same
        context length."""
        if any(c.null_rows for c in contexts):
            raise ValueError("cannot stack contexts that already hold null rows")
        kv = [(torch.cat([c.kv[i][0] for c in contexts]), torch.cat([c.kv[i][1] for c in contexts]))
              for i in range(len(contexts[0].kv))]
        spatial = contexts[0].spatial
        if any((c.spatial is None) != (spatial is None) or (spatial is not None and not torch.equal(c.spatial, spatial))
               for c in contexts[1:]):
            # The stacked blocks are guidance halves over the same ids (forward's `repeat`).
            raise ValueError("contexts stacked for guidance must share their low-res conditioning ids")
        return PreparedContext(kv, torch.cat([c.mask for c in contexts]), spatial=spatial)


@dataclass(frozen=True)
class ForwardInputs:
    """One request's inputs to `MaskedTransformer.forward` (as its arguments say), for `forward_many`, which
    runs several requests' as one batch."""

    ids: torch.Tensor  # long (B, N)
    context: PreparedContext  # repeat * B rows
    positions: Optional[torch.Tensor] = None  # long (B, M): the only tokens whose outputs are wanted
    repeat: int = 1
    token_features: Optional[torch.Tensor] = None  # (B, N): a confidence_input critic's log-probabilities


class MaskedTransformer(nn.Module, PretrainedMixin):
    """Token grid + text context -> per-token logits (generator) or wrongness scores (critic)."""

    config_class = TransformerConfig

    def __init__(self, config: TransformerConfig):
        super().__init__()
        self.config = cfg = config
        vocab = cfg.num_tokens + (1 if cfg.kind == "generator" else 0)  # the generator adds the mask token
        self.token_emb = nn.Embedding(vocab, cfg.dim)
        self.pos_emb = nn.Embedding(cfg.seq_len, cfg.dim)
        self.text_proj = nn.Linear(cfg.text_dim, cfg.dim, bias=False)
        if cfg.text_pooled:
            self.pooled_proj = nn.Linear(cfg.text_dim, cfg.dim, bias=False)
        if cfg.cond_seq_len:
            # Low-res tokens get their own embedding and positions: the reference reused token_emb
            # without positions, which leaves the network guessing where each low-res token sits.
            self.cond_token_emb = nn.Embedding(cfg.num_tokens, cfg.dim)
            self.cond_pos_emb = nn.Embedding(cfg.cond_seq_len, cfg.dim)
        if cfg.cond_spatial:
            # Each high-res position starts from its low-res parent (and, through a 3x3 convolution,
            # the parent's neighbours): super-res then refines what it is handed, where it was handed.
            self.spatial_emb = nn.Embedding(cfg.num_tokens, cfg.dim)
            self.spatial_conv = nn.Conv2d(cfg.dim, cfg.dim, 3, padding=1)
        if cfg.self_cond:
            self.self_cond_to_init_embed = FeedForward(cfg.dim, 4)
        self.blocks = nn.ModuleList([Block(cfg) for _ in range(cfg.depth)])
        self.norm = LayerNorm(cfg.dim)
        self.to_logits = nn.Linear(cfg.dim, cfg.num_tokens if cfg.kind == "generator" else 1, bias=False)
        if cfg.self_critic:
            self.to_critic = nn.Linear(cfg.dim, 1)
        if cfg.confidence_input:
            # Parameters made without a random draw, so adding them changes no other weight of a seed.
            self.confidence_emb = nn.Parameter(torch.zeros(cfg.dim))  # input: log p times this direction
            self.confidence_gain = nn.Parameter(torch.ones(()))
        self.apply(self._init)
        if cfg.confidence_input:
            nn.init.zeros_(self.to_logits.weight)  # score = -log p to start: the confidence's ranking

    @staticmethod
    def _init(module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding, nn.Conv2d)):
            nn.init.normal_(module.weight, std=0.02)
            if getattr(module, "bias", None) is not None:
                nn.init.zeros_(module.bias)

    @property
    def mask_id(self) -> int:
        return self.config.mask_id

    def prepare_context(self, text_embeds: torch.Tensor, text_mask: torch.Tensor,
                        cond_ids: Optional[torch.Tensor] = None) -> PreparedContext:
        """Project the context once per request.

        text_embeds: (B, L, text_dim); text_mask: bool (B, L), False = padding or dropped;
        cond_ids: (B, cond_seq_len) low-res token ids for super-res, always attended.
        """
        cfg = self.config
        text_embeds = text_embeds.to(self.text_proj.weight.dtype)
        context = self.text_proj(text_embeds)  # (B, L, D)
        mask = text_mask.bool()
        if cfg.text_pooled:
            weights = mask.to(text_embeds.dtype)[..., None]  # a dropped caption pools to nothing, masked below
            pooled = l2norm((text_embeds * weights).sum(1) / weights.sum(1).clamp(min=1))  # (B, text_dim)
            context = torch.cat((context, self.pooled_proj(pooled)[:, None]), dim=1)
            mask = torch.cat((mask, mask.any(dim=1, keepdim=True)), dim=1)
        if cfg.cond_seq_len:
            if cond_ids is None:
                raise ValueError("this transformer is conditioned on low-res token ids: pass cond_ids")
            cond_ids = cond_ids.reshape(cond_ids.shape[0], -1)
            if cond_ids.shape[1] != cfg.cond_seq_len:
                raise ValueError(f"expected {cfg.cond_seq_len} conditioning ids, got {cond_ids.shape[1]}")
            cond = self.cond_token_emb(cond_ids) + self.cond_pos_emb.weight  # (B, M, D)
            context = torch.cat((context, cond), dim=1)
            mask = torch.cat((mask, torch.ones_like(cond_ids, dtype=torch.bool)), dim=1)
        elif cond_ids is not None:
            raise ValueError("this transformer takes no conditioning ids")
        kv = [block.cross_attn.project_kv(context) for block in self.blocks]
        full_mask = F.pad(mask, (1, 0), value=True)[:, None, None, :]  # null key always attended
        spatial = self._spatial(cond_ids) if cfg.cond_spatial else None
        return PreparedContext(kv, full_mask, spatial=spatial)

    def _spatial(self, cond_ids: torch.Tensor) -> torch.Tensor:
        """Low-res ids (B, h*w) -> per high-res position embeddings (B, N, D), each from its parent."""
        b, m = cond_ids.shape
        side, cond_side = self.config.grid, int(round(m ** 0.5))
        e = self.spatial_emb(cond_ids).transpose(1, 2).reshape(b, -1, cond_side, cond_side)  # (B, D, h, w)
        e = e + self.spatial_conv(e)
        e = e.repeat_interleave(side // cond_side, 2).repeat_interleave(side // cond_side, 3)  # (B, D, H, W)
        return e.flatten(2).transpose(1, 2)

    def forward(self, ids: torch.Tensor, context: PreparedContext,
                self_cond_embed: Optional[torch.Tensor] = None, positions: Optional[torch.Tensor] = None,
                repeat: int = 1, token_features: Optional[torch.Tensor] = None) -> tuple[torch.Tensor, torch.Tensor]:
        """ids: (B, N) long -> (logits (R, N, V) or (R, N) critic scores, embeddings (R, N, D)), R = repeat * B.

        repeat: the context holds `repeat` blocks of B rows over these same ids (classifier-free
        guidance: 2, conditional then unconditional); everything before the first cross-attention
        runs once for all blocks. positions: long (B, M), the only tokens whose outputs are wanted
        (the sampler asks for the masked ones): the last block computes its queries, feed-forward and
        logits there alone, and every N above reads M.
        """
        call = ForwardInputs(ids, context, positions, repeat, token_features)
        if not self.config.self_cond:
            return self.forward_many([call])[0]
        x = self._inputs([call])
        if self_cond_embed is not None and self_cond_embed.shape[0] != ids.shape[0]:  # one per block: no sharing
            x = x.repeat(repeat, 1, 1)
            rows = [t.repeat(repeat, 1) if t is not None else None for t in (ids, positions, token_features)]
            call = ForwardInputs(rows[0], context, rows[1], 1, rows[2])
        x = x + self.self_cond_to_init_embed(self_cond_embed if self_cond_embed is not None else torch.zeros_like(x))
        return self._run(x, [call])[0]

    def forward_many(self, calls: Sequence["ForwardInputs"],
                     exact: bool = True) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Several requests' forwards as one batch (`muse.batching`): for each call, what `forward` returns
        for it alone, (R_i, N or M_i, ...) for R_i = repeat_i * B_i.

        Every block but the last runs once for all calls: ids rows are stacked, each call's guidance blocks
        read its own rows (`Block.forward`'s expand) and each call's rows cross-attend its own context
        (`Attention.attend`). `exact`: the last block and the head run call by call, which gives each call
        its own forward's bits where the kernels compute a row alike in any batch (a CPU: see `_run`);
        False: they run once too, each call's positions padded to the most asked (a GPU, whose kernels choose
        by shape anyway, and where a kernel launch per call would cost more than the work). Not for
        self-conditioned models (`forward`).
        """
        if self.config.self_cond:
            raise ValueError("a self-conditioned transformer runs one request at a time: call forward")
        x = self._inputs(calls)
        return self._run(x, calls) if exact or len(calls) == 1 else self._run_padded(x, calls)

    def _inputs(self, calls: Sequence["ForwardInputs"]) -> torch.Tensor:
        """The calls checked, their token embeddings as one batch (U, N, D), U their rows of ids in turn."""
        n = self.config.seq_len
        for c in calls:
            b = c.ids.shape[0]
            if c.ids.shape[1] != n:
                raise ValueError(f"expected {n} tokens, got {c.ids.shape[1]}")
            if b * c.repeat != c.context.batch:
                raise ValueError(f"{b} rows of ids (x{c.repeat}) for a context of {c.context.batch} rows")
            if c.positions is not None and c.positions.shape[0] != b:
                raise ValueError(f"positions for {c.positions.shape[0]} rows, ids of {b} rows")
            if self.config.confidence_input and (c.token_features is None or c.token_features.shape != c.ids.shape):
                raise ValueError("this critic reads the generator's log-probability of each token: pass "
                                 f"token_features of shape {tuple(c.ids.shape)}")
        one = len(calls) == 1
        ids = calls[0].ids if one else torch.cat([c.ids for c in calls])
        x = self.token_emb(ids) + self.pos_emb.weight  # (U, N, D)
        if self.config.confidence_input:
            features = calls[0].token_features if one else torch.cat([c.token_features for c in calls])
            x = x + features[..., None].to(x.dtype) * self.confidence_emb.to(x.dtype)
        if calls[0].context.spatial is not None:  # one row per row of ids (guidance halves share them)
            x = x + (calls[0].context.spatial if one else torch.cat([c.context.spatial for c in calls]))
        return x

    @staticmethod
    def _expand(calls: Sequence["ForwardInputs"]) -> Optional[torch.Tensor]:
        """long (R,): for each context row, the calls' in turn, the row of ids it reads; None when no call
        repeats its rows."""
        if all(c.repeat == 1 for c in calls):
            return None
        rows, start = [], 0
        for c in calls:
            b = c.ids.shape[0]
            rows.append(torch.arange(start, start + b, device=c.ids.device).repeat(c.repeat))
            start += b
        return torch.cat(rows)

    def _run(self, x: torch.Tensor, calls: Sequence["ForwardInputs"]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Embeddings (U, N, D) of the calls' ids rows through the blocks and the output head: each call's
        (out, embed).

        The last block and the head run call by call, with each call's own rows and positions, as alone:
        their rows are the positions a call asks for, often few, and the matrix kernels choose their method
        by the number of rows (MKL takes another path under about 16 rows, and a one-column product, a
        critic's head, as a matrix-vector one whose sums depend on the row count), so only a call's own
        shapes give its own bits. The blocks before see every token of a row (64 or more rows per image):
        there a row is computed alike in any batch, and they run once for all calls.
        """
        *head, last = self.blocks
        contexts = [c.context for c in calls]
        expand = self._expand(calls)
        for i, block in enumerate(head):
            x = block(x, contexts, i, expand=expand if i == 0 else None)
        results, start = [], 0
        for c in calls:
            b = c.ids.shape[0]
            rows = b * c.repeat if head else b  # past the first block, x holds the context rows
            part = x if len(calls) == 1 else x[start:start + rows]
            positions, own_expand = c.positions, None
            if head and positions is not None and c.repeat > 1:
                positions = positions.repeat(c.repeat, 1)
            if not head and c.repeat > 1:
                own_expand = torch.arange(b, device=x.device).repeat(c.repeat)
            out = last(part, [c.context], len(head), positions=positions, expand=own_expand)
            results.append(self._output(out, c))
            start += rows
        return results

    def _run_padded(self, x: torch.Tensor,
                    calls: Sequence["ForwardInputs"]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """`_run` with the last block and the head once for all calls: positions of several counts padded to
        the largest with each row's last position (every position for a call that asks none), the padding's
        outputs dropped. Equal to each call's own forward up to the kernels' rounding."""
        *head, last = self.blocks
        contexts = [c.context for c in calls]
        expand = self._expand(calls)
        for i, block in enumerate(head):
            x = block(x, contexts, i, expand=expand if i == 0 else None)
        n = self.config.seq_len
        positions = None
        if any(c.positions is not None for c in calls):
            width = max(n if c.positions is None else c.positions.shape[1] for c in calls)
            rows = []
            for c in calls:
                p = c.positions if c.positions is not None else \
                    torch.arange(n, device=c.ids.device).expand(c.ids.shape[0], n)
                rows.append(torch.cat((p, p[:, -1:].expand(-1, width - p.shape[1])), dim=1))
            positions = torch.cat(rows)  # (U, M)
        if head:
            rows = positions if positions is None or expand is None else positions.index_select(0, expand)
            x = last(x, contexts, len(head), positions=rows)
        else:
            x = last(x, contexts, 0, positions=positions, expand=expand)
        embed = self.norm(x)
        out = self.to_logits(embed)
        if self.config.kind == "critic":
            out = out.squeeze(-1)
        if self.config.confidence_input:
            lp = torch.cat([c.token_features for c in calls])
            lp = lp if positions is None else lp.gather(1, positions)
            out = out - self.confidence_gain * (lp if expand is None else lp.index_select(0, expand)).to(out.dtype)
        results, start = [], 0
        for c in calls:
            rows = c.ids.shape[0] * c.repeat
            width = x.shape[1] if c.positions is None else c.positions.shape[1]
            o, e = out[start:start + rows, :width], embed[start:start + rows, :width]
            results.append((o.contiguous(), e.contiguous()))
            start += rows
        return results

    def _output(self, x: torch.Tensor, call: "ForwardInputs") -> tuple[torch.Tensor, torch.Tensor]:
        """The last block's output for one call (R, N or M, D) -> (logits or critic scores, embeddings)."""
        embed = self.norm(x)
        out = self.to_logits(embed)
        if self.config.kind == "critic":
            out = out.squeeze(-1)
        if self.config.confidence_input:
            lp = call.token_features if call.positions is None else call.token_features.gather(1, call.positions)
            out = out - self.confidence_gain * lp.repeat(out.shape[0] // lp.shape[0], 1).to(out.dtype)
        return out, embed

    def critic_scores(self, embed: torch.Tensor) -> torch.Tensor:
        """Self-critic head: (B, N, D) embeddings -> (B, N) "token is wrong" logits."""
        if not self.config.self_critic:
            raise ValueError("this transformer has no self-critic head")
        return self.to_critic(embed).squeeze(-1)


def MaskGitTransformer(**kwargs) -> MaskedTransformer:
    """The generator: vocabulary plus a mask token, predicts token ids."""
    return MaskedTransformer(TransformerConfig(kind="generator", **kwargs))


def TokenCritic(**kwargs) -> MaskedTransformer:
    """A separate critic: one logit per token saying "this token is wrong" (MUSE's token critic)."""
    return MaskedTransformer(TransformerConfig(kind="critic", **kwargs))
