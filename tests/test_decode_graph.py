"""The compiled decode step (stages/lm/decode_graph.py): one graph per batch shape that never recompiles
while a request decodes, and the codes of the eager model in fp32 and in dynamic int8.

The default suite captures the graph with dynamo's "eager" backend (tracing, graph breaks, guards, in seconds);
the slow tests compile with inductor, as serving does (about 30 s a graph here).

    .venv/bin/python -m pytest tests/test_decode_graph.py -q            # -m slow: the inductor tests
"""

from __future__ import annotations

import copy

import pytest
import torch

from conftest import memorise
from stages.config.model import GenerationConfig, ModelConfig
from stages.lm.decode_graph import CompiledDecodeStep, Int8GraphLinear, make_int8_traceable
from stages.lm.export import quantize_int8
from stages.lm.generate import Request, generate, stream
from stages.lm.model import KVCache, MiniMindTTS
from stages.lm.vocab import Vocab

VOCAB = Vocab(n_text=40, n_speech=4096)
SMALL = ModelConfig(dim=64, n_layers=2, n_heads=4, n_kv_heads=2, ffn_dim=128, rope_theta=1e4, max_seq_len=256)
GREEDY = GenerationConfig(temperature=0.0, min_len_ratio=0.0, max_len_ratio=10)


@pytest.fixture(scope="module")
def memorised():
    model, requests, codes = memorise(VOCAB, SMALL)
    # the third request one token longer: a batch of all three is left-padded
    return model.fuse_projections(), requests[:2] + [Request(requests[2].text + (7,))], codes


@pytest.fixture(autouse=True)
def fresh_dynamo():
    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()
    yield
    torch._dynamo.reset()


def graphs() -> int:
    return torch._dynamo.utils.counters["stats"]["unique_graphs"]


@pytest.mark.parametrize("int8", [False, True], ids=["fp32", "int8"])
def test_captured_step_is_one_graph_per_batch_shape_with_the_eager_codes(memorised, int8):
    model, requests, codes = memorised
    model = quantize_int8(copy.deepcopy(model)) if int8 else model
    eager_one, eager_batch = generate(model, VOCAB, requests[:1], GREEDY), generate(model, VOCAB, requests, GREEDY)
    assert [g.codes for g in eager_one] == codes[:1]
    step = CompiledDecodeStep(model, backend="eager")   # fullgraph: a graph break would raise
    assert generate(model, VOCAB, requests[:1], GREEDY, decode_step=step) == eager_one
    assert graphs() == 1                                # 24 steps of one request: no recompile
    assert generate(model, VOCAB, requests, GREEDY, decode_step=step) == eager_batch
    assert graphs() == 2                                # a padded batch of 3: one more, then none
    assert generate(model, VOCAB, requests[1:], GREEDY, decode_step=step) == generate(model, VOCAB, requests[1:],
                                                                                     GREEDY)
    assert graphs() == 2                                # another batch size and prompt width, same graph


def test_streaming_with_the_step_gives_generates_codes(memorised):
    model, requests, _ = memorised
    step = CompiledDecodeStep(model, backend="eager")
    config = GenerationConfig(min_len_ratio=2.0, max_len_ratio=4.0)   # sampled: the same draws as eager
    chunks = list(stream(model, VOCAB, requests[0], config, decode_step=step))
    assert [c for chunk in chunks for c in chunk.codes] == generate(model, VOCAB, requests[:1], config)[0].codes


def test_int8_graph_linears_call_the_quantised_kernel():
    torch.manual_seed(0)
    model = quantize_int8(MiniMindTTS(SMALL, VOCAB.size).eval().fuse_projections())
    ids = torch.randint(0, VOCAB.size, (2, 9))
    with torch.no_grad():
        expected = model(ids).logits
        assert make_int8_traceable(model) == 2 * 4 + 1      # qkv, o, gate_up, down per block, and the head
        assert isinstance(model.lm_head, Int8GraphLinear)
        torch.testing.assert_close(model(ids).logits, expected, rtol=0, atol=0)


def test_the_step_refuses_a_prompt_moe_and_a_full_context(memorised):
    model, _, _ = memorised
    step = CompiledDecodeStep(model, backend="eager")
    cache = KVCache(SMALL, 1, 8)
    with pytest.raises(ValueError, match="one token per row"):
        step(torch.zeros(1, 2, dtype=torch.long), torch.zeros(1, 2, dtype=torch.long), cache)
    cache.length = SMALL.max_seq_len
    with pytest.raises(ValueError, match="beyond max_seq_len"):
        step(torch.zeros(1, 1, dtype=torch.long), torch.zeros(1, 1, dtype=torch.long), cache)
    moe = MiniMindTTS(ModelConfig(**{**SMALL.__dict__, "n_experts": 2}), VOCAB.size)
    with pytest.raises(ValueError, match="MoE"):
        CompiledDecodeStep(moe, backend="eager")


@pytest.mark.slow
@pytest.mark.parametrize("int8", [False, True], ids=["fp32", "int8"])
def test_inductor_compiled_greedy_codes_equal_eager(memorised, int8):
    model, requests, codes = memorised
    model = quantize_int8(copy.deepcopy(model)) if int8 else model
    eager = generate(model, VOCAB, requests, GREEDY)
    step = CompiledDecodeStep(model)
    assert generate(model, VOCAB, requests[:1], GREEDY, decode_step=step)[0].codes == codes[0]
    assert generate(model, VOCAB, requests, GREEDY, decode_step=step) == eager
    assert graphs() == 2


def test_two_steps_in_one_process_each_decode_their_own_model(memorised):
    """The graphs skip guards on the model's modules, so each step must hold graphs of its own."""
    model, requests, codes = memorised
    torch.manual_seed(1)
    other = MiniMindTTS(SMALL, VOCAB.size).eval().fuse_projections()
    first, second = CompiledDecodeStep(model, backend="eager"), CompiledDecodeStep(other, backend="eager")
    assert generate(model, VOCAB, requests[:1], GREEDY, decode_step=first)[0].codes == codes[0]
    expected = generate(other, VOCAB, requests[:1], GREEDY)
    assert generate(other, VOCAB, requests[:1], GREEDY, decode_step=second) == expected
    assert generate(model, VOCAB, requests[:1], GREEDY, decode_step=first)[0].codes == codes[0]
