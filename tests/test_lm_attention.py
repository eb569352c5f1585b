"""Grouped-query attention gives the same result on every SDPA path, and precision follows what the GPU has."""

from __future__ import annotations

import math

import pytest
import torch

from stages.config.base import ConfigError
from stages.lm.export import inference_dtype
from stages.lm.model import attend, flash_eligible
from stages.train.engine import resolve_precision


def reference(q, k, v, mask, causal):
    groups = q.shape[1] // k.shape[1]
    k, v = k.repeat_interleave(groups, 1), v.repeat_interleave(groups, 1)
    scores = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])
    length = q.shape[2]
    if causal:
        scores = scores.masked_fill(~torch.ones(length, length, dtype=torch.bool).tril(), float("-inf"))
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    return scores.softmax(-1) @ v


@pytest.mark.parametrize("use_mask", [False, True])
def test_expanded_kv_attention_equals_grouped_attention(use_mask):
    g = torch.Generator().manual_seed(0)
    q = torch.randn(2, 8, 7, 16, generator=g)
    k, v = torch.randn(2, 2, 7, 16, generator=g), torch.randn(2, 2, 7, 16, generator=g)
    mask = None
    if use_mask:  # left padding in the first row, as batched generation has
        valid = torch.ones(2, 7, dtype=torch.bool)
        valid[0, :2] = False
        mask = (valid[:, None, None, :] & torch.ones(7, 7, dtype=torch.bool).tril())
        mask[0, :, :2, :] = True  # padded queries see everything, so no row is all -inf
    causal = not use_mask
    torch.testing.assert_close(attend(q, k, v, mask, causal, 0.0), reference(q, k, v, mask, causal),
                               rtol=1e-5, atol=1e-5)
    assert not flash_eligible(q, mask)  # fp32 on the CPU: the expanded path


def test_flash_is_chosen_only_for_half_precision_cuda_without_a_mask():
    meta = torch.empty(1, 1, 1, 1, device="meta", dtype=torch.bfloat16)
    assert not flash_eligible(meta, None)  # not CUDA
    assert not flash_eligible(torch.empty(1, 1, 1, 1, dtype=torch.bfloat16), None)


def test_training_refuses_emulated_bf16_and_auto_picks_fp32_there(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: including_emulation)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "Tesla V100")
    gpu = torch.device("cuda", 0)
    with pytest.raises(ConfigError, match=r"sft.precision: bf16 is only emulated on Tesla V100"):
        resolve_precision("bf16", gpu, "sft")
    assert resolve_precision("auto", gpu) == "fp32" and inference_dtype(gpu) == torch.float32
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: True)
    assert resolve_precision("auto", gpu) == "bf16" and inference_dtype(gpu) == torch.bfloat16
    assert resolve_precision("auto", torch.device("cpu")) == "fp32" and inference_dtype("cpu") == torch.float32
