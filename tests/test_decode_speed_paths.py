"""The fast decoding paths give what the plain ones give: batched sampling draws `sample`'s tokens row for
row, the folded GQA decode equals expanded K/V, fused projections give the separate layers' logits,
int8 and bf16 greedy codes equal fp32's on a trained model, and the forward's max_seq_len check reads no
tensor values off a device.

    .venv/bin/python -m pytest tests/test_decode_speed_paths.py -q
"""

from __future__ import annotations

import copy
import random
from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F

from conftest import memorise
from stages.config.model import GenerationConfig, ModelConfig
from stages.lm.export import quantize_int8
from stages.lm.generate import generate, sample, sample_rows
from stages.lm.model import MiniMindTTS, attend
from stages.lm.vocab import Vocab

VOCAB = Vocab(n_text=40, n_speech=4096)
SMALL = ModelConfig(dim=64, n_layers=2, n_heads=4, n_kv_heads=2, ffn_dim=128, rope_theta=1e4, max_seq_len=256)


@pytest.mark.parametrize("config", [
    GenerationConfig(),                                   # CosyVoice's top-p, top-k and RAS
    GenerationConfig(top_k=0, top_p=1.0, ras_tau=0.0),    # RAS redraws every token
    GenerationConfig(temperature=0.7, ras_window=0),
    GenerationConfig(temperature=0.0),
], ids=["cosyvoice", "ras-always", "no-ras", "greedy"])
def test_batched_sampling_draws_the_per_row_tokens(config):
    torch.manual_seed(0)
    rows, vocab = 6, 300
    # peaked logits, so that the nucleus is small and repeats (and RAS redraws) happen often
    logits = torch.randn(rows, vocab) * 4
    histories = [[random.Random(row).randrange(8) for _ in range(config.ras_window)] for row in range(rows)]
    for seed in range(20):
        reference = [sample(logits[row], histories[row], config, torch.Generator().manual_seed(seed + row))
                     for row in range(rows)]
        generators = [torch.Generator().manual_seed(seed + row) for row in range(rows)]
        recent = torch.tensor(histories, dtype=torch.long).reshape(rows, -1)
        assert sample_rows(logits, recent, config, generators).tolist() == reference


@pytest.mark.parametrize("padded", [False, True])
def test_folded_gqa_decode_step_equals_expanded_kv(padded):
    torch.manual_seed(0)
    batch, heads, kv_heads, length, dim = 3, 8, 2, 17, 16
    q = torch.randn(batch, heads, 1, dim)
    k, v = torch.randn(batch, kv_heads, length, dim), torch.randn(batch, kv_heads, length, dim)
    mask = None
    if padded:
        mask = torch.ones(batch, 1, 1, length, dtype=torch.bool)
        mask[1, ..., :5] = False
    groups = heads // kv_heads
    expected = F.scaled_dot_product_attention(q, k.repeat_interleave(groups, 1), v.repeat_interleave(groups, 1),
                                              attn_mask=mask)
    torch.testing.assert_close(attend(q, k, v, mask, False, 0.0), expected, rtol=1e-5, atol=1e-6)


def test_int8_greedy_codes_equal_fp32_on_a_trained_model():
    model, requests, codes = memorise(VOCAB, SMALL)
    config = GenerationConfig(temperature=0.0, min_len_ratio=0.0, max_len_ratio=10)
    fp32 = generate(model, VOCAB, requests, config)
    assert [g.codes for g in fp32] == codes
    int8 = quantize_int8(copy.deepcopy(model))
    assert [g.codes for g in generate(int8, VOCAB, requests, config)] == [g.codes for g in fp32]
    assert [g.stop_reason for g in generate(int8, VOCAB, requests, config)] == ["eos"] * len(requests)


def test_int8_logits_stay_near_fp32():
    """On random weights (flat logits, where greedy codes of the two may part) the logits still agree closely."""
    torch.manual_seed(0)
    model = MiniMindTTS(SMALL, VOCAB.size).eval()
    ids = torch.randint(0, VOCAB.size, (2, 40))
    with torch.no_grad():
        fp32 = model(ids).logits
        int8 = quantize_int8(copy.deepcopy(model))(ids).logits
    relative = ((int8 - fp32).norm() / fp32.norm()).item()
    assert relative < 0.05, relative


def test_bf16_greedy_codes_equal_fp32_on_a_trained_model():
    """The whole LM in bf16 on the CPU (weights, activations and the KV cache; norms and RoPE in fp32)."""
    model, requests, codes = memorise(VOCAB, SMALL)
    config = GenerationConfig(temperature=0.0, min_len_ratio=0.0, max_len_ratio=10)
    bf16 = copy.deepcopy(model).to(torch.bfloat16)
    generated = generate(bf16, VOCAB, requests, config)
    assert [g.codes for g in generated] == codes
    assert [g.stop_reason for g in generated] == ["eos"] * len(requests)


def test_bf16_logits_stay_near_fp32():
    """On random weights the bf16 logits differ from fp32's by about bf16's rounding (8 bits of mantissa)."""
    torch.manual_seed(0)
    model = MiniMindTTS(SMALL, VOCAB.size).eval()
    ids = torch.randint(0, VOCAB.size, (2, 40))
    with torch.no_grad():
        fp32 = model(ids).logits
        bf16 = copy.deepcopy(model).to(torch.bfloat16)(ids).logits.float()
    relative = ((bf16 - fp32).norm() / fp32.norm()).item()
    assert relative < 0.05, relative


@pytest.mark.parametrize("moe", [False, True], ids=["dense", "moe"])
def test_fused_projections_give_the_separate_layers_logits(moe):
    config = replace(SMALL, n_experts=3, experts_per_token=2, n_shared_experts=1) if moe else SMALL
    torch.manual_seed(0)
    model = MiniMindTTS(config, VOCAB.size).eval()
    ids = torch.randint(0, VOCAB.size, (2, 40))
    fused = copy.deepcopy(model).fuse_projections()
    assert not any(name.endswith(("q_proj.weight", "gate_proj.weight")) for name, _ in fused.named_parameters())
    with torch.no_grad():
        torch.testing.assert_close(fused(ids).logits, model(ids).logits, rtol=1e-5, atol=1e-5)


def test_fused_greedy_codes_equal_fp32_alone_and_with_int8():
    model, requests, codes = memorise(VOCAB, SMALL)
    config = GenerationConfig(temperature=0.0, min_len_ratio=0.0, max_len_ratio=10)
    fused = copy.deepcopy(model).fuse_projections()
    assert [g.codes for g in generate(fused, VOCAB, requests, config)] == codes
    fused_int8 = quantize_int8(fused)
    generated = generate(fused_int8, VOCAB, requests, config)
    assert [g.codes for g in generated] == codes
    assert [g.stop_reason for g in generated] == ["eos"] * len(requests)


def test_int8_is_refused_off_the_cpu():
    model = MiniMindTTS(SMALL, VOCAB.size).to("meta")
    with pytest.raises(ValueError, match="CPU only"):
        quantize_int8(model)


def test_max_seq_len_check_reads_no_values_off_the_device():
    """On the meta device any read of a tensor's value fails, as a device-to-host sync would stall a GPU."""
    with torch.device("meta"):
        model = MiniMindTTS(SMALL, VOCAB.size)
        ids = torch.zeros(2, 8, dtype=torch.long)
        positions = torch.arange(8).expand(2, 8)
    assert model(ids, positions=positions).logits.shape == (2, 8, VOCAB.size)
    with pytest.raises(ValueError, match="max_seq_len"):
        model(torch.zeros(1, SMALL.max_seq_len + 1, dtype=torch.long, device="meta"))


def test_explicit_positions_beyond_max_seq_len_are_refused_on_the_cpu():
    model = MiniMindTTS(SMALL, VOCAB.size)
    with pytest.raises(ValueError, match="max_seq_len"):
        model(torch.zeros(1, 4, dtype=torch.long), positions=torch.tensor([[0, 1, 2, SMALL.max_seq_len]]))
