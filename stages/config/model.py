"""The LM's preset files (configs/model/*.yaml, named by `pretrain.model`) and its decoding settings.

    python -c "from stages.config.model import load_model_config; print(load_model_config('configs/model/26m.yaml'))"

A model preset (`configs/model/*.yaml`) fills `ModelConfig`; vocabulary sizes are not part of it, because
they come from the fitted tokenizer and the codec when the model is built (see `stages.lm.vocab.Vocab`).
`GenerationConfig` holds decoding settings; its length ratios are re-derived from the corpus
(`stages.lm.generate.fit_length_ratios`) and stored with the model in `config.json`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from stages.config.base import ConfigError, setting
from stages.config.presets import load_yaml_as


@dataclass(frozen=True)
class ModelConfig:
    """Shape of the decoder-only MiniMind/Llama language model (vocabulary sizes come from the tokenizer and codec)."""

    dim: int = setting(512, "hidden size; 512 is MiniMind's 26M model.", minimum=8)
    n_layers: int = setting(8, "transformer blocks; 8 is MiniMind's 26M model.", minimum=1)
    n_heads: int = setting(8, "query heads; head size dim/n_heads = 64 suits SDPA kernels.", minimum=1)
    n_kv_heads: int = setting(
        2, "key/value heads (GQA); 4 query heads per kv head quarters the KV cache with little quality loss.",
        minimum=1)
    ffn_dim: int = setting(
        1408, "SwiGLU hidden size; 8/3 x dim rounded up to a multiple of 64 keeps the dense FFN's size at 4 x dim.",
        minimum=1)
    rope_theta: float = setting(
        1e6, "RoPE base; MiniMind's 1e6 keeps rotations distinguishable over the thousands of positions of 30 s "
             "of speech.", exclusiveMinimum=0)
    max_seq_len: int = setting(
        4096, "longest sequence (prompt + text + speech); 4096 holds about 50 s of speech at 75 codes/s.", minimum=2)
    dropout: float = setting(
        0.0, "dropout on embeddings, attention and residual branches; 0 for pretraining on a large corpus, "
             "0.1 helps a small SFT set.", minimum=0.0, maximum=1.0)
    norm_eps: float = setting(1e-5, "RMSNorm epsilon, as in MiniMind.", exclusiveMinimum=0)
    tie_embeddings: bool = setting(
        True, "share the input embedding with the output head; saves vocab x dim parameters in a small model.")
    init_std: float = setting(0.02, "std of the normal init of weights (GPT-2/Llama).", exclusiveMinimum=0)
    n_experts: int = setting(
        0, "routed experts per MoE layer; 0 means a dense SwiGLU FFN in every block.", minimum=0)
    experts_per_token: int = setting(
        2, "experts each token is routed to (top-k); 2 is MiniMind-MoE's and Mixtral's choice.", minimum=1)
    n_shared_experts: int = setting(
        0, "experts every token passes through besides its routed ones (DeepSeek-MoE, MiniMind-MoE use 1).",
        minimum=0)
    aux_loss_weight: float = setting(
        0.01, "weight of the load-balancing loss (Switch Transformer's 0.01): enough to keep all experts used "
              "without dominating the LM loss.", minimum=0.0)

    @property
    def head_dim(self) -> int:
        return self.dim // self.n_heads

    @property
    def is_moe(self) -> bool:
        return self.n_experts > 0

    def validate(self, where: str = "model") -> None:
        if self.dim % self.n_heads:
            raise ConfigError(f"{where}.n_heads: dim {self.dim} is not divisible by n_heads {self.n_heads}")
        if self.head_dim % 2:
            raise ConfigError(f"{where}.n_heads: head size {self.head_dim} must be even for RoPE")
        if self.n_heads % self.n_kv_heads:
            raise ConfigError(
                f"{where}.n_kv_heads: n_heads {self.n_heads} is not a multiple of n_kv_heads {self.n_kv_heads}")
        if self.n_experts == 1:
            raise ConfigError(f"{where}.n_experts: use 0 for a dense FFN or at least 2 experts")
        if self.is_moe and self.experts_per_token > self.n_experts:
            raise ConfigError(
                f"{where}.experts_per_token: {self.experts_per_token} exceeds n_experts {self.n_experts}")


@dataclass(frozen=True)
class GenerationConfig:
    """How speech codes are decoded; defaults follow CosyVoice's sampling, length ratios re-derived per corpus."""

    temperature: float = setting(
        1.0, "softmax temperature; 0 decodes greedily (and disables top-k, top-p and RAS).", minimum=0.0)
    top_k: int = setting(25, "sample among the k most likely codes (CosyVoice's 25); 0 disables.", minimum=0)
    top_p: float = setting(
        0.8, "nucleus: smallest set of codes whose probability reaches p (CosyVoice's 0.8); 1 disables.",
        exclusiveMinimum=0.0, maximum=1.0)
    ras_window: int = setting(
        10, "repetition-aware sampling (CosyVoice RAS): recent codes checked for repeats; 0 disables.", minimum=0)
    ras_tau: float = setting(
        0.1, "RAS: if the sampled code already fills this share of the window, resample from the full "
             "distribution (0.1 x 10 = any repeat), which breaks the loops that top-k/top-p sampling falls into.",
        minimum=0.0, maximum=1.0)
    min_len_ratio: float = setting(
        6.0, "EOS is forbidden before this many codes per text token; CosyVoice's 2 at 25 codes/s scaled to "
             "75/s, replaced by fit_length_ratios on the corpus.", minimum=0.0)
    max_len_ratio: float = setting(
        60.0, "EOS is forced after this many codes per text token, so generation always ends; CosyVoice's 20 "
              "at 25 codes/s scaled to 75/s, replaced by fit_length_ratios on the corpus.", exclusiveMinimum=0.0)
    seed: int = setting(0, "seed of each item's torch.Generator, so a given input always gives the same codes.")
    chunk_size: int = setting(
        25, "codes per streamed chunk after the first; 25 is a third of a second at 75 codes/s.", minimum=1)
    first_chunk_size: int = setting(
        16, "codes in the first streamed chunk, fewer than the others so that audio starts sooner. The streaming "
            "decoder holds back its newest 8 codes until their right context arrives, so the first chunk gives "
            "the audio of first_chunk_size - 8 codes: 16 gives 107 ms at 75 codes/s.", minimum=1)

    def validate(self, where: str = "generation") -> None:
        if self.max_len_ratio < self.min_len_ratio:
            raise ConfigError(
                f"{where}.max_len_ratio: {self.max_len_ratio} is below min_len_ratio {self.min_len_ratio}")


def load_model_config(path: str | Path, overrides: Optional[dict] = None) -> ModelConfig:
    """Read a model preset YAML (configs/model/*.yaml), optionally with keys overridden."""
    return load_yaml_as(ModelConfig, path, overrides, f"model ({path})")
