"""Save and load a trained LM without DeepSpeed, and export it to Hugging Face transformers' Llama layout.

    python -m stages.lm.export results/demo/sft/model results/demo/sft/hf     # Llama layout (MoE off)

A model folder holds `model.safetensors` (weights; a tied output head is stored once, as the embedding)
and `config.json` = {"format", "model": ModelConfig, "vocab": Vocab, "generation": GenerationConfig},
plus whatever files the caller adds (the sentencepiece model, so text is tokenised as in training).

The Hugging Face export is a plain `LlamaForCausalLM` checkpoint: our block is Llama's (pre-norm RMSNorm,
half-split RoPE, GQA, SwiGLU, no biases), so only names change. `minimind_tts.json` beside it records the
vocabulary layout and generation settings: a server must still restrict decoding to speech codes + EOS.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Optional, Sequence, get_args

import torch
from safetensors.torch import load_file, save_file

from stages.common.atomic import atomic_output
from stages.config import from_dict, to_dict
from stages.config.model import GenerationConfig, ModelConfig
from stages.lm.model import MiniMindTTS
from stages.lm.vocab import Vocab

FORMAT = "minimind-tts/1"
WEIGHTS, CONFIG = "model.safetensors", "config.json"
Quantize = Literal["none", "int8"]
QUANTIZE_CHOICES = get_args(Quantize)
CODEC_FILE = "codec.json"  # the codec whose codes the model was trained on (codec_id, frame rate, sizes)


@dataclass
class LoadedModel:
    model: MiniMindTTS
    vocab: Vocab
    generation: GenerationConfig


def save_model(model: MiniMindTTS, vocab: Vocab, generation: GenerationConfig, out_dir: str | Path,
               extra_files: Sequence[str | Path] = ()) -> Path:
    """Write `out_dir` atomically: weights, config.json, and copies of `extra_files` (by file name)."""
    if model.vocab_size != vocab.size:
        raise ValueError(f"model has {model.vocab_size} embeddings but the vocabulary has {vocab.size} ids")
    state = {name: t.detach().to("cpu").contiguous() for name, t in model.state_dict().items()}
    if model.config.tie_embeddings:
        del state["lm_head.weight"]  # the same tensor as embed.weight; safetensors refuses shared storage
    config = {"format": FORMAT, "model": to_dict(model.config), "vocab": vocab.to_dict(),
              "generation": to_dict(generation)}
    out_dir = Path(out_dir)
    with atomic_output(out_dir) as tmp:
        tmp.mkdir()
        save_file(state, str(tmp / WEIGHTS), metadata={"format": FORMAT})
        (tmp / CONFIG).write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n")
        for path in extra_files:
            shutil.copy2(path, tmp / Path(path).name)
    return out_dir


def read_config(model_dir: str | Path) -> tuple[ModelConfig, Vocab, GenerationConfig]:
    """The three configs of a saved model, validated (unknown keys are an error, naming the key)."""
    path = Path(model_dir) / CONFIG
    data = json.loads(path.read_text())
    if data.get("format") != FORMAT:
        raise ValueError(f"{path}: format {data.get('format')!r} is not {FORMAT!r}")
    return (from_dict(ModelConfig, data["model"], f"{path}: model"), Vocab.from_dict(data["vocab"]),
            from_dict(GenerationConfig, data.get("generation", {}), f"{path}: generation"))


def inference_dtype(device: str | torch.device) -> torch.dtype:
    """bf16 on a GPU with native bf16 (half the memory traffic per decoded token, and the flash kernel), else fp32."""
    device = torch.device(device)
    native = device.type == "cuda" and torch.cuda.is_bf16_supported(including_emulation=False)
    return torch.bfloat16 if native else torch.float32


def quantize_int8(model: MiniMindTTS) -> MiniMindTTS:
    """The model with every linear layer in dynamic int8 (weights int8 per tensor, activations quantised
    on the fly), for decoding on a CPU: one token at a time reads every weight once, so a quarter of the
    bytes is most of the time (benchmarks/bench_synthesis.py measures it; README "Synthesis speed" gives the
    divergence from fp32 greedy codes). The embedding stays fp32; a tied output head gets its own int8 copy.
    """
    if next(model.parameters()).device.type != "cpu":
        raise ValueError("int8 quantisation runs on the CPU only (fbgemm/onednn kernels); use bf16 on a GPU")
    with warnings.catch_warnings():
        # torch.ao.quantization warns of its move to torchao, which is not installed here; it still runs
        warnings.simplefilter("ignore")
        return torch.ao.quantization.quantize_dynamic(model.float(), {torch.nn.Linear}, dtype=torch.qint8)


def load_model(model_dir: str | Path, device: str | torch.device = "cpu",
               dtype: Optional[torch.dtype] | str = "auto", quantize: Quantize = "none",
               fuse: bool = False) -> LoadedModel:
    """Build the model from config.json and load its weights; returned in eval mode.

    dtype "auto" is `inference_dtype(device)`; None keeps the saved fp32 weights; torch.bfloat16 on a CPU
    decodes in bf16 (oneDNN kernels; only worth it where the CPU has avx512_bf16 or AMX, and
    benchmarks/bench_synthesis.py measures whether it is). quantize "int8" makes the linear layers dynamic
    int8 (CPU only; see `quantize_int8`) from fp32 weights, so it takes no other dtype. fuse: the decoding
    layout (`MiniMindTTS.fuse_projections`), for a model that is only run, never trained or saved.
    """
    if quantize not in QUANTIZE_CHOICES:
        raise ValueError(f"quantize: {quantize!r} is not one of {', '.join(QUANTIZE_CHOICES)}")
    if quantize == "int8" and dtype not in ("auto", None, torch.float32):
        raise ValueError(f"quantize int8 is made from fp32 weights; dtype {dtype} would be dropped")
    if dtype == "auto":
        dtype = inference_dtype(device)
    model_config, vocab, generation = read_config(model_dir)
    state = load_file(str(Path(model_dir) / WEIGHTS), device=str(device))
    if model_config.tie_embeddings:
        state["lm_head.weight"] = state["embed.weight"]
    with torch.device("meta"):  # no time spent initialising weights that are overwritten next
        model = MiniMindTTS(model_config, vocab.size)
    model.load_state_dict(state, strict=True, assign=True)
    if model_config.tie_embeddings:
        model.lm_head.weight = model.embed.weight  # assign=True replaced the shared Parameter: tie again
    if dtype is not None:
        model = model.to(dtype)
    if fuse:
        model.fuse_projections()
    if quantize == "int8":
        model = quantize_int8(model.eval())
    return LoadedModel(model.eval(), vocab, generation)


# ours -> Hugging Face Llama, as (regex, replacement) applied in order
_HF_NAMES = [
    (r"^embed\.", "model.embed_tokens."),
    (r"^blocks\.(\d+)\.attn_norm\.", r"model.layers.\1.input_layernorm."),
    (r"^blocks\.(\d+)\.ffn_norm\.", r"model.layers.\1.post_attention_layernorm."),
    (r"^blocks\.(\d+)\.attn\.", r"model.layers.\1.self_attn."),
    (r"^blocks\.(\d+)\.ffn\.", r"model.layers.\1.mlp."),
    (r"^norm\.", "model.norm."),
]


def hf_name(name: str) -> str:
    for pattern, replacement in _HF_NAMES:
        new = re.sub(pattern, replacement, name)
        if new != name:
            return new
    return name  # lm_head.weight is called the same


def export_hf(model: MiniMindTTS, vocab: Vocab, generation: GenerationConfig, out_dir: str | Path) -> Path:
    """Write a transformers `LlamaForCausalLM` folder (config.json + model.safetensors) with our logits."""
    cfg = model.config
    if cfg.is_moe:
        raise ValueError("an MoE model has no Llama layout; export it with n_experts = 0 or serve it with our code")
    state = {hf_name(name): t.detach().to("cpu").contiguous() for name, t in model.state_dict().items()}
    if cfg.tie_embeddings:
        del state["lm_head.weight"]
    dtype = str(model.embed.weight.dtype).removeprefix("torch.")
    hf_config = {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama",
        "vocab_size": vocab.size, "hidden_size": cfg.dim, "intermediate_size": cfg.ffn_dim,
        "num_hidden_layers": cfg.n_layers, "num_attention_heads": cfg.n_heads,
        "num_key_value_heads": cfg.n_kv_heads, "head_dim": cfg.head_dim, "hidden_act": "silu",
        "max_position_embeddings": cfg.max_seq_len, "rms_norm_eps": cfg.norm_eps,
        # transformers >= 5 reads rope_parameters, 4.x reads rope_theta
        "rope_parameters": {"rope_type": "default", "rope_theta": cfg.rope_theta}, "rope_theta": cfg.rope_theta,
        "tie_word_embeddings": cfg.tie_embeddings, "attention_bias": False, "mlp_bias": False,
        "attention_dropout": 0.0, "initializer_range": cfg.init_std,
        "bos_token_id": vocab.sos, "eos_token_id": vocab.eos, "pad_token_id": vocab.pad, "dtype": dtype,
    }
    sidecar = {"format": FORMAT, "vocab": vocab.to_dict(), "generation": to_dict(generation),
               "note": "prompt = [SOS] text pieces [TASK]; sample only speech ids and EOS (see vocab.layout)"}
    out_dir = Path(out_dir)
    with atomic_output(out_dir) as tmp:
        tmp.mkdir()
        save_file(state, str(tmp / WEIGHTS), metadata={"format": "pt"})
        (tmp / CONFIG).write_text(json.dumps(hf_config, indent=2) + "\n")
        (tmp / "minimind_tts.json").write_text(json.dumps(sidecar, indent=2, ensure_ascii=False) + "\n")
    return out_dir


def main(argv: Optional[list[str]] = None) -> None:
    parser = argparse.ArgumentParser(description="Export a saved MiniMind-TTS model to transformers' Llama layout.")
    parser.add_argument("model_dir", type=Path, help="folder with model.safetensors + config.json")
    parser.add_argument("out_dir", type=Path, help="folder to write the LlamaForCausalLM checkpoint to")
    args = parser.parse_args(argv)
    loaded = load_model(args.model_dir)
    export_hf(loaded.model, loaded.vocab, loaded.generation, args.out_dir)
    print(f"{args.model_dir} -> {args.out_dir} (LlamaForCausalLM)")


if __name__ == "__main__":
    main()
