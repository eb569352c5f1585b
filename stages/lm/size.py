"""How big a MiniMind-TTS model is: its parameters by formula, as held, and one line for logs.

    python -m stages.lm.size configs/model/26m.yaml --n-text 2000      # parameter count of a preset
"""

from __future__ import annotations

import argparse
from typing import Optional

import torch
from torch import nn

from stages.config.model import ModelConfig, load_model_config
from stages.lm.model import MiniMindTTS
from stages.lm.vocab import Vocab


def parameter_count(config: ModelConfig, vocab_size: int) -> dict[str, int]:
    """Parameters by formula: total, embedding (input + untied output), non-embedding, and active per token.

    Per block: attention dim*head_dim*(2*n_heads + 2*n_kv_heads); SwiGLU 3*dim*ffn_dim per expert
    (one when dense; n_experts + n_shared_experts plus a dim x n_experts router with MoE); two norms of
    dim. Plus the embedding vocab*dim, the output head vocab*dim unless tied, and the final norm dim.
    """
    attention = config.dim * config.head_dim * (2 * config.n_heads + 2 * config.n_kv_heads)
    swiglu = 3 * config.dim * config.ffn_dim
    if config.is_moe:
        router = config.dim * config.n_experts
        ffn = (config.n_experts + config.n_shared_experts) * swiglu + router
        ffn_active = (config.experts_per_token + config.n_shared_experts) * swiglu + router
    else:
        ffn = ffn_active = swiglu
    norms = 2 * config.dim
    embedding = vocab_size * config.dim * (1 if config.tie_embeddings else 2)
    body = config.n_layers * (attention + ffn + norms) + config.dim
    body_active = config.n_layers * (attention + ffn_active + norms) + config.dim
    return {"total": embedding + body, "embedding": embedding, "non_embedding": body,
            "active": embedding + body_active}


def count_parameters(model: nn.Module) -> int:
    """Parameters actually held (a tied embedding counted once)."""
    return sum(p.numel() for p in model.parameters())


def describe(config: ModelConfig, vocab_size: int) -> str:
    """One line for start-up logs: sizes in millions, by formula."""
    c = parameter_count(config, vocab_size)
    moe = f", {c['active'] / 1e6:.1f}M active per token" if config.is_moe else ""
    return (f"MiniMind-TTS: {c['total'] / 1e6:.2f}M parameters ({c['non_embedding'] / 1e6:.2f}M in blocks, "
            f"{c['embedding'] / 1e6:.2f}M embedding{moe}); {config.n_layers} x {config.dim}, "
            f"{config.n_heads}/{config.n_kv_heads} heads, vocab {vocab_size}")


def main(argv: Optional[list[str]] = None) -> None:
    parser = argparse.ArgumentParser(description="Parameter count of a model preset.")
    parser.add_argument("preset", help="configs/model/<name>.yaml")
    parser.add_argument("--n-text", type=int, required=True, help="sentencepiece vocabulary size")
    parser.add_argument("--n-speech", type=int, default=4096, help="codec codebook size")
    parser.add_argument("--speakers", type=int, default=0, help="number of speaker tokens")
    args = parser.parse_args(argv)
    config = load_model_config(args.preset)
    vocab = Vocab(n_text=args.n_text, n_speech=args.n_speech, speakers=tuple(f"spk{i}" for i in range(args.speakers)))
    with torch.device("meta"):  # counts a 100M model without allocating it
        built = count_parameters(MiniMindTTS(config, vocab.size))
    print(describe(config, vocab.size))
    print(f"built on the meta device: {built:,} parameters (formula {parameter_count(config, vocab.size)['total']:,})")


if __name__ == "__main__":
    main()
