"""MiniMind-TTS: a decoder-only Llama-style transformer over text pieces and speech codes.

Read top to bottom: RMSNorm, RoPE, the KV cache, attention (GQA via SDPA), SwiGLU, MoE, the block and the
model (its parameter-count formula is `stages.lm.size`). Targets arrive already aligned by `stages.lm.vocab`
(the target at position p is the token at p+1, or EOS), so the loss compares logits[p] with targets[p] and
never shifts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from stages.config.model import ModelConfig
from stages.lm.alignment_loss import AlignmentPositions, alignment_scores
from stages.lm.vocab import IGNORE_INDEX


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: Tensor) -> Tensor:
        # in float32 whatever the weights' dtype: the mean of squares overflows or rounds badly in bf16;
        # one fused op, where the written-out formula was six small ones in every norm of every decode step
        return self.weight * F.rms_norm(x.float(), self.weight.shape, eps=self.eps).to(x.dtype)


def rope(positions: Tensor, head_dim: int, theta: float) -> tuple[Tensor, Tensor]:
    """cos and sin, (B, L, head_dim), for integer positions (B, L); Llama's half-split layout.

    Computed per call in float32 rather than held in a buffer, so casting the model to bf16 never
    rounds the angles and any position up to max_seq_len works.
    """
    inv_freq = 1.0 / theta ** (torch.arange(0, head_dim, 2, device=positions.device).float() / head_dim)
    angles = positions.float()[..., None] * inv_freq
    angles = torch.cat([angles, angles], dim=-1)
    return angles.cos(), angles.sin()


def fused_linear(layers: list[nn.Linear]) -> nn.Linear:
    """One bias-free linear layer whose output is the given layers' outputs side by side."""
    weight = torch.cat([layer.weight.detach() for layer in layers])
    fused = nn.Linear(weight.shape[1], weight.shape[0], bias=False, device="meta")
    fused.weight = nn.Parameter(weight, requires_grad=False)
    return fused


def apply_rope(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotate x (B, H, L, D): pairs (i, i + D/2) turn by their angle, as in Hugging Face's Llama."""
    x1, x2 = x.chunk(2, dim=-1)
    rotated = torch.cat([-x2, x1], dim=-1)
    return (x * cos[:, None] + rotated * sin[:, None]).to(x.dtype)


class KVCache:
    """Keys and values of every layer for the positions decoded so far, preallocated for `max_len`.

    `valid` marks real tokens (False for left padding of a batched prompt); it grows with the cache so
    that a padded key stays hidden from every later query. Each layer has tensors of its own, not a slice
    of one buffer: a compiled decode step (decode_graph.py) then writes them in place, where a write into a
    view of a graph input makes the compiler copy the whole buffer every step.
    """

    def __init__(self, config: ModelConfig, batch: int, max_len: int,
                 device: torch.device | str | None = None, dtype: torch.dtype = torch.float32):
        shape = (batch, config.n_kv_heads, max_len, config.head_dim)
        self.k = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(config.n_layers)]
        self.v = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(config.n_layers)]
        self.valid = torch.ones(batch, max_len, device=device, dtype=torch.bool)
        self.padded = False
        self.length = 0

    def store(self, layer: int, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        """Write this step's keys/values of one layer; return all keys/values up to and including them."""
        end = self.length + k.shape[2]
        self.k[layer][:, :, self.length:end] = k
        self.v[layer][:, :, self.length:end] = v
        return self.k[layer][:, :, :end], self.v[layer][:, :, :end]


def build_attention_mask(key_valid: Optional[Tensor], start: int, length: int,
                   device: torch.device) -> tuple[Optional[Tensor], bool]:
    """(mask, is_causal) for queries at positions start..start+length-1 over keys 0..start+length-1.

    Without padding, SDPA's own causal flag (fresh sequence) or no mask (one new token sees all before
    it) is fastest. Otherwise a boolean mask, True = may attend; every query also sees itself, so a
    padding query never has an all-masked row (which would be NaN and leak through 0 x NaN).
    """
    if key_valid is None and start == 0:
        return None, length > 1
    if key_valid is None and length == 1:
        return None, False
    q_pos = torch.arange(start, start + length, device=device)[:, None]
    k_pos = torch.arange(start + length, device=device)[None, :]
    allowed = k_pos <= q_pos
    if key_valid is not None:
        allowed = allowed & key_valid[:, None, :]
    allowed = allowed | (k_pos == q_pos)
    return (allowed[:, None] if allowed.dim() == 3 else allowed), False


def biased_mask(bias: Tensor, mask: Optional[Tensor], length: int, dtype: torch.dtype) -> Tensor:
    """A float mask (B, 1, L, L) for SDPA: `bias` (B, L, L) where `mask` (bool, or causal when None) allows, -inf
    elsewhere."""
    if mask is None:
        mask = torch.ones(length, length, dtype=torch.bool, device=bias.device).tril()
    return bias[:, None].to(dtype).masked_fill(~mask, float("-inf"))


def flash_eligible(q: Tensor, mask: Optional[Tensor]) -> bool:
    """Whether SDPA's flash kernel takes this call: a CUDA tensor in fp16/bf16 without an explicit mask."""
    return q.is_cuda and q.dtype in (torch.float16, torch.bfloat16) and mask is None


def attend(q: Tensor, k: Tensor, v: Tensor, mask: Optional[Tensor], causal: bool, dropout: float) -> Tensor:
    """Grouped-query attention: query head h reads kv head h // (n_heads / n_kv_heads).

    The flash kernel reads the shared K/V heads itself (enable_gqa). Any other kernel (fp32, a mask, the CPU)
    would fall to the math kernel under enable_gqa, which repeats K/V anyway and holds fp32 L x L scores;
    expanding K/V here instead keeps those calls on the fused (memory-efficient or CPU flash) kernels.
    """
    if flash_eligible(q, mask):
        return F.scaled_dot_product_attention(q, k, v, is_causal=causal, enable_gqa=True, dropout_p=dropout)
    groups = q.shape[1] // k.shape[1]
    if groups > 1 and q.shape[2] == 1 and not causal:
        # one new token per row (cached decoding): the query heads sharing a kv head are stacked as that
        # head's queries, so the cache is read where it lies instead of copied `groups` times every step
        batch, heads, _, head_dim = q.shape
        folded = q.reshape(batch, k.shape[1], groups, head_dim)
        out = F.scaled_dot_product_attention(folded, k, v, attn_mask=mask, dropout_p=dropout)
        return out.reshape(batch, heads, 1, head_dim)
    if groups > 1:
        k, v = k.repeat_interleave(groups, dim=1), v.repeat_interleave(groups, dim=1)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal, dropout_p=dropout)


class Attention(nn.Module):
    def __init__(self, config: ModelConfig, layer: int):
        super().__init__()
        self.layer, self.n_heads, self.n_kv_heads = layer, config.n_heads, config.n_kv_heads
        self.head_dim, self.dropout = config.head_dim, config.dropout
        self.q_proj = nn.Linear(config.dim, config.n_heads * self.head_dim, bias=False)
        self.k_proj = nn.Linear(config.dim, config.n_kv_heads * self.head_dim, bias=False)
        self.v_proj = nn.Linear(config.dim, config.n_kv_heads * self.head_dim, bias=False)
        self.o_proj = nn.Linear(config.n_heads * self.head_dim, config.dim, bias=False)
        self.qkv_proj: Optional[nn.Linear] = None

    def fuse_projections(self) -> None:
        """q, k and v from one matmul (see MiniMindTTS.fuse_projections)."""
        self.qkv_proj = fused_linear([self.q_proj, self.k_proj, self.v_proj])
        del self.q_proj, self.k_proj, self.v_proj

    def project(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        if self.qkv_proj is None:
            return self.q_proj(x), self.k_proj(x), self.v_proj(x)
        kv_width = self.n_kv_heads * self.head_dim
        return self.qkv_proj(x).split([self.n_heads * self.head_dim, kv_width, kv_width], dim=-1)

    def forward(self, x: Tensor, cos: Tensor, sin: Tensor, mask: Optional[Tensor], causal: bool,
                cache: Optional[KVCache], alignment: Optional[AlignmentPositions] = None
                ) -> tuple[Tensor, Optional[Tensor]]:
        """The attention's output, and with `alignment` its speech-over-text logits (alignment_loss.py)."""
        batch, length, _ = x.shape
        q, k, v = self.project(x)
        q = q.reshape(batch, length, self.n_heads, self.head_dim).transpose(1, 2)
        k = k.reshape(batch, length, self.n_kv_heads, self.head_dim).transpose(1, 2)
        v = v.reshape(batch, length, self.n_kv_heads, self.head_dim).transpose(1, 2)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        if cache is not None:
            k, v = cache.store(self.layer, k, v)
        out = attend(q, k, v, mask, causal, self.dropout if self.training else 0.0)
        scores = alignment_scores(q, k, alignment) if alignment is not None else None
        return self.o_proj(out.transpose(1, 2).reshape(batch, length, -1)), scores


class FeedForward(nn.Module):
    """SwiGLU: down(silu(gate(x)) * up(x))."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.gate_proj = nn.Linear(config.dim, config.ffn_dim, bias=False)
        self.up_proj = nn.Linear(config.dim, config.ffn_dim, bias=False)
        self.down_proj = nn.Linear(config.ffn_dim, config.dim, bias=False)
        self.gate_up_proj: Optional[nn.Linear] = None

    def fuse_projections(self) -> None:
        """gate and up from one matmul (see MiniMindTTS.fuse_projections)."""
        self.gate_up_proj = fused_linear([self.gate_proj, self.up_proj])
        del self.gate_proj, self.up_proj

    def forward(self, x: Tensor) -> Tensor:
        if self.gate_up_proj is None:
            gate, up = self.gate_proj(x), self.up_proj(x)
        else:
            gate, up = self.gate_up_proj(x).chunk(2, dim=-1)
        return self.down_proj(F.silu(gate) * up)


class MoE(nn.Module):
    """Top-k routed SwiGLU experts (+ optional shared experts) with the Switch load-balancing loss."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.top_k = config.experts_per_token
        self.router = nn.Linear(config.dim, config.n_experts, bias=False)
        self.experts = nn.ModuleList(FeedForward(config) for _ in range(config.n_experts))
        self.shared = nn.ModuleList(FeedForward(config) for _ in range(config.n_shared_experts))

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        flat = x.reshape(-1, x.shape[-1])
        probs = self.router(flat).float().softmax(dim=-1)
        weight, chosen = probs.topk(self.top_k, dim=-1)
        weight = (weight / weight.sum(dim=-1, keepdim=True)).to(x.dtype)
        out = torch.zeros_like(flat)
        for e, expert in enumerate(self.experts):
            token, slot = (chosen == e).nonzero(as_tuple=True)
            # an expert that got no token still runs on an empty batch: its parameters then get a zero
            # gradient instead of none, which DDP and ZeRO require
            out = out.index_add(0, token, expert(flat[token]) * weight[token, slot, None])
        for expert in self.shared:
            out = out + expert(flat)
        # Switch Transformer: n_experts * sum_e (share of assignments to e) x (mean router prob of e);
        # 1 when routing is uniform, larger when a few experts take most tokens
        load = F.one_hot(chosen, len(self.experts)).float().sum(dim=(0, 1)) / chosen.numel()
        aux = len(self.experts) * (load * probs.mean(dim=0)).sum()
        return out.view_as(x), aux


class Block(nn.Module):
    def __init__(self, config: ModelConfig, layer: int):
        super().__init__()
        self.attn_norm = RMSNorm(config.dim, config.norm_eps)
        self.attn = Attention(config, layer)
        self.ffn_norm = RMSNorm(config.dim, config.norm_eps)
        self.ffn = MoE(config) if config.is_moe else FeedForward(config)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: Tensor, cos: Tensor, sin: Tensor, mask: Optional[Tensor], causal: bool,
                cache: Optional[KVCache], alignment: Optional[AlignmentPositions] = None
                ) -> tuple[Tensor, Optional[Tensor], Optional[Tensor]]:
        """(output, MoE aux loss or None, alignment scores or None)."""
        attended, scores = self.attn(self.attn_norm(x), cos, sin, mask, causal, cache, alignment)
        x = x + self.dropout(attended)
        h = self.ffn(self.ffn_norm(x))
        h, aux = h if isinstance(h, tuple) else (h, None)
        return x + self.dropout(h), aux, scores


@dataclass
class LMOutput:
    logits: Tensor                        # (B, L, vocab)
    loss: Optional[Tensor] = None         # ce_loss + aux_loss_weight * aux_loss: what training minimises
    ce_loss: Optional[Tensor] = None      # mean cross-entropy over speech-code and EOS targets
    aux_loss: Optional[Tensor] = None     # MoE load balancing, mean over layers (0 for a dense model)
    accuracy: Optional[Tensor] = None     # share of speech-code and EOS targets that are the argmax
    n_targets: Optional[Tensor] = None    # supervised positions, to weight averages over batches
    alignment_scores: Optional[list[Tensor]] = None   # per layer (B, H, T, S), when asked for (alignment_loss.py)


class MiniMindTTS(nn.Module):
    def __init__(self, config: ModelConfig, vocab_size: int):
        super().__init__()
        self.config, self.vocab_size = config, vocab_size
        self.embed = nn.Embedding(vocab_size, config.dim)
        self.dropout = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(Block(config, i) for i in range(config.n_layers))
        self.norm = RMSNorm(config.dim, config.norm_eps)
        self.lm_head = nn.Linear(config.dim, vocab_size, bias=False)
        if config.tie_embeddings:
            self.lm_head.weight = self.embed.weight
        self.apply(self._init_weights)
        # GPT-2: scale the projections that write into the residual stream by depth, so its variance
        # does not grow with the number of layers
        for name, param in self.named_parameters():
            if name.endswith(("o_proj.weight", "down_proj.weight")):
                nn.init.normal_(param, std=config.init_std / (2 * config.n_layers) ** 0.5)

    def fuse_projections(self) -> "MiniMindTTS":
        """For decoding: q/k/v and gate/up each become one linear layer, so every layer of a decode step runs
        three matmuls fewer (and dynamic int8 quantises each input once); the same outputs up to float rounding.
        The separate layers are the training and checkpoint layout, so a fused model is for inference only.
        """
        for module in list(self.modules()):
            if isinstance(module, (Attention, FeedForward)):
                module.fuse_projections()
        return self

    def _init_weights(self, module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, std=self.config.init_std)

    def _check_positions(self, sequence_length: int, positions: Tensor) -> None:
        """Refuse positions beyond max_seq_len, without a device-to-host sync on a GPU.

        The sequence length (cache + new tokens) is known on the host, and bounds the positions of every
        layout this code builds (left-padded rows count fewer positions than columns). Positions a caller
        passes could still exceed it; their values are read only where that costs no sync, on the CPU.
        """
        limit = self.config.max_seq_len
        if sequence_length > limit:
            raise ValueError(f"a sequence of {sequence_length} positions is beyond max_seq_len {limit}")
        if positions.device.type == "cpu" and positions.numel() and int(positions.max()) >= limit:
            raise ValueError(f"position {int(positions.max())} is beyond max_seq_len {limit}")

    def run_layers(self, input_ids: Tensor, cos: Tensor, sin: Tensor, mask: Optional[Tensor], causal: bool,
                   cache: Optional[KVCache] = None, alignment: Optional[AlignmentPositions] = None
                   ) -> tuple[Tensor, list[Tensor], list[Tensor]]:
        """Embedding, blocks and output head: (logits, MoE aux losses, alignment scores), what `forward`
        and the compiled decode step share; the caller advances the cache's length."""
        x = self.dropout(self.embed(input_ids))
        aux_losses, layer_scores = [], []
        for block in self.blocks:
            x, aux, scores = block(x, cos, sin, mask, causal, cache, alignment)
            if aux is not None:
                aux_losses.append(aux)
            if scores is not None:
                layer_scores.append(scores)
        return self.lm_head(self.norm(x)), aux_losses, layer_scores

    def forward(self, input_ids: Tensor, targets: Optional[Tensor] = None, *,
                attention_mask: Optional[Tensor] = None, positions: Optional[Tensor] = None,
                cache: Optional[KVCache] = None, attention_bias: Optional[Tensor] = None,
                alignment: Optional[AlignmentPositions] = None) -> LMOutput:
        """Logits for `input_ids` (B, L), and the loss when `targets` (B, L) are given.

        attention_mask (B, L), True = real token, is only needed for left padding or padding in the
        middle (right padding cannot reach real tokens through causal attention). positions (B, L)
        default to 0.. (after what the cache holds); left-padded rows pass their own. attention_bias
        (B, L, L), query by key, is added to every head's attention logits of a fresh sequence (training's
        alignment prior, stages/lm/attention_prior.py). With `alignment`, every layer's attention logits of the
        speech queries over the text are returned too, for training's alignment loss (alignment_loss.py).
        """
        batch, length = input_ids.shape
        start = cache.length if cache is not None else 0
        if positions is None:
            positions = torch.arange(start, start + length, device=input_ids.device).expand(batch, length)
        self._check_positions(start + length, positions)
        if attention_mask is not None and bool(attention_mask.all()):
            attention_mask = None
        key_valid = attention_mask
        if cache is not None:
            if attention_mask is not None:
                cache.valid[:, start:start + length] = attention_mask
                cache.padded = True
            key_valid = cache.valid[:, :start + length] if cache.padded else None
        mask, causal = build_attention_mask(key_valid, start, length, input_ids.device)
        if attention_bias is not None:
            if cache is not None:
                raise ValueError("attention_bias is for training on fresh sequences, not cached decoding")
            mask, causal = biased_mask(attention_bias, mask, length, self.embed.weight.dtype), False
        cos, sin = rope(positions, self.config.head_dim, self.config.rope_theta)

        logits, aux_losses, layer_scores = self.run_layers(input_ids, cos, sin, mask, causal, cache, alignment)
        if cache is not None:
            cache.length += length
        if targets is None:
            return LMOutput(logits=logits, alignment_scores=layer_scores or None)

        supervised = targets != IGNORE_INDEX
        n_targets = supervised.sum()
        ce = F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten(), ignore_index=IGNORE_INDEX,
                             reduction="sum") / n_targets.clamp(min=1)
        accuracy = (logits.argmax(dim=-1)[supervised] == targets[supervised]).float().sum() / n_targets.clamp(min=1)
        aux_loss = torch.stack(aux_losses).mean() if aux_losses else torch.zeros((), device=logits.device)
        loss = ce + self.config.aux_loss_weight * aux_loss
        return LMOutput(logits, loss, ce, aux_loss, accuracy, n_targets, layer_scores or None)
