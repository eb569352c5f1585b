"""Generation: determinism, sampling filters, RAS, length limits and stop reasons, batching, streaming,
voice-prompt continuation."""

import random

import pytest
import torch

from conftest import overfit
from stages.config.model import GenerationConfig, ModelConfig
from stages.lm.generate import Request, fit_length_ratios, generate, length_bounds, nucleus, sample, stream
from stages.lm.model import LMOutput, MiniMindTTS
from stages.lm.vocab import EOS, SOS, TASK, Vocab, collate

VOCAB = Vocab(n_text=40, n_speech=4096, speakers=("awb",))
SMALL = ModelConfig(dim=64, n_layers=2, n_heads=4, n_kv_heads=2, ffn_dim=128, rope_theta=1e4, max_seq_len=256)
SAMPLING = GenerationConfig(min_len_ratio=2.0, max_len_ratio=4.0)
REQUESTS = [Request((1, 2, 3)), Request((4, 5, 6, 7, 8, 9), speaker="awb"), Request((10, 11))]


@pytest.fixture(scope="module")
def model() -> MiniMindTTS:
    torch.manual_seed(0)
    return MiniMindTTS(SMALL, VOCAB.size).eval()


class EagerToStop(MiniMindTTS):
    """A model that always wants EOS: shows where the minimum length holds it back."""

    def forward(self, *args, **kwargs) -> LMOutput:
        out = super().forward(*args, **kwargs)
        out.logits[..., EOS] += 1e4
        return out


def test_same_seed_same_codes_other_seed_other_codes(model):
    first = generate(model, VOCAB, REQUESTS, SAMPLING)
    assert first == generate(model, VOCAB, REQUESTS, SAMPLING)
    other = generate(model, VOCAB, REQUESTS, GenerationConfig(**{**SAMPLING.__dict__, "seed": 1}))
    assert [g.codes for g in other] != [g.codes for g in first]


def test_only_speech_codes_are_generated(model):
    for result in generate(model, VOCAB, REQUESTS, SAMPLING):
        assert result.codes and all(0 <= c < VOCAB.n_speech for c in result.codes)


def kept(logits: torch.Tensor, p: float, k: int) -> list[int]:
    probs, tokens = nucleus(logits, p, k)
    return sorted(tokens[probs > 0].tolist())


def test_nucleus_top_k_keeps_the_k_largest():
    logits = torch.tensor([0.1, 3.0, -1.0, 2.0, 0.5])
    assert kept(logits, 1.0, 2) == [1, 3]
    assert kept(logits, 1.0, 0) == [0, 1, 2, 3, 4]


def test_nucleus_top_p_keeps_the_smallest_set_reaching_p():
    logits = torch.tensor([0.5, 0.3, 0.15, 0.05]).log()
    assert kept(logits, 0.7, 0) == [0, 1]
    assert kept(logits, 0.81, 0) == [0, 1, 2]
    assert kept(logits, 0.1, 0) == [0]                    # never empty
    assert kept(logits[[3, 0, 2, 1]], 0.7, 0) == [1, 3]
    assert kept(logits, 0.81, 2) == [0, 1]                # top-k caps what top-p keeps
    assert kept(logits, 0.7, 3) == [0, 1]                 # top-p measured over all tokens, not the k


def test_nucleus_is_the_sorted_top_p_then_top_k_renormalised():
    """Against the plain definition: sort everything, cut at mass p, then keep the k largest survivors."""
    torch.manual_seed(0)
    for p, k in [(0.8, 25), (0.95, 5), (1.0, 25), (0.5, 0), (0.8, 4097)]:
        logits = torch.randn(3, 4097) * 3
        probs, tokens = nucleus(logits, p, k)
        for row in range(3):
            ordered, order = logits[row].sort(descending=True)
            mass = ordered.softmax(dim=-1)
            keep = (mass.cumsum(dim=-1) - mass < p) if p < 1 else torch.ones_like(mass, dtype=torch.bool)
            if 0 < k:
                keep[k:] = False
            expected = torch.zeros(4097)
            expected[order[keep]] = ordered[keep].softmax(dim=-1)
            got = torch.zeros(4097).index_add(0, tokens[row], probs[row])
            torch.testing.assert_close(got, expected)


def test_sampling_stays_inside_top_k_and_top_p():
    logits = torch.tensor([4.0, 3.9, 3.8, 0.0, 0.0, 0.0])
    generator = torch.Generator().manual_seed(0)
    no_ras = GenerationConfig(top_k=2, top_p=1.0, ras_window=0)
    assert {sample(logits, [], no_ras, generator) for _ in range(200)} == {0, 1}


def test_repetition_aware_sampling_leaves_the_nucleus_only_after_a_repeat():
    # top_k=1 always proposes token 0; the full distribution mostly prefers the other 99 tokens
    logits = torch.zeros(100)
    logits[0] = 2.0
    config = GenerationConfig(top_k=1, top_p=1.0, ras_window=10, ras_tau=0.1)
    generator = torch.Generator().manual_seed(0)
    fresh = [sample(logits, [5, 6, 7], config, generator) for _ in range(200)]
    assert set(fresh) == {0}
    looping = [sample(logits, [0, 5, 6], config, generator) for _ in range(200)]
    assert sum(t != 0 for t in looping) > 150
    outside_window = [sample(logits, [0] + [5] * 10, config, generator) for _ in range(50)]
    assert set(outside_window) == {0}


def test_greedy_ignores_sampling_settings(model):
    greedy = GenerationConfig(temperature=0.0, min_len_ratio=2.0, max_len_ratio=4.0)
    assert generate(model, VOCAB, REQUESTS, greedy) == generate(
        model, VOCAB, REQUESTS, GenerationConfig(**{**greedy.__dict__, "seed": 7, "top_k": 3}))


def test_eos_is_forbidden_before_min_len_and_taken_right_after():
    torch.manual_seed(0)
    eager = EagerToStop(SMALL, VOCAB.size).eval()
    results = generate(eager, VOCAB, REQUESTS, GenerationConfig(min_len_ratio=2.5, max_len_ratio=10.0))
    for request, result in zip(REQUESTS, results):
        assert len(result.codes) == result.min_len == int(2.5 * len(request.text))
        assert result.stop_reason == "eos"


def test_max_len_cuts_generation_and_says_so(model):
    # a random model almost never picks EOS among 4097 choices: it runs into the limit
    results = generate(model, VOCAB, REQUESTS, GenerationConfig(min_len_ratio=1.0, max_len_ratio=3.0))
    for request, result in zip(REQUESTS, results):
        assert len(result.codes) == result.max_len == 3 * len(request.text)
        assert result.stop_reason == "max_length"


def test_length_bounds_fit_the_context_and_refuse_empty_text():
    assert length_bounds(10, 20, GenerationConfig(min_len_ratio=2, max_len_ratio=5), 1000) == (20, 50)
    assert length_bounds(10, 980, GenerationConfig(min_len_ratio=3, max_len_ratio=5), 1000) == (20, 20)
    assert length_bounds(1, 5, GenerationConfig(min_len_ratio=0.1, max_len_ratio=0.2), 1000) == (1, 1)
    with pytest.raises(ValueError, match="no text"):
        length_bounds(0, 2, GenerationConfig(), 1000)
    with pytest.raises(ValueError, match="no room"):
        length_bounds(5, 1000, GenerationConfig(), 1000)


def test_fit_length_ratios_brackets_the_corpus():
    text = [10, 20, 5, 8]
    codes = [200, 300, 120, 160]   # 20, 15, 24, 20 codes per token
    low, high = fit_length_ratios(text, codes, low_quantile=0.0, high_quantile=1.0, margin=1.5)
    assert low == pytest.approx(15 / 1.5) and high == pytest.approx(24 * 1.5)


@pytest.mark.parametrize("temperature", [0.0, 1.0])
def test_batched_generation_equals_one_by_one(model, temperature):
    config = GenerationConfig(temperature=temperature, min_len_ratio=2.0, max_len_ratio=4.0)
    together = generate(model, VOCAB, REQUESTS, config)
    alone = [generate(model, VOCAB, [request], config)[0] for request in REQUESTS]
    assert together == alone
    assert generate(model, VOCAB, REQUESTS[::-1], config) == together[::-1]


def test_cached_and_uncached_decoding_agree(model):
    config = GenerationConfig(min_len_ratio=2.0, max_len_ratio=4.0)
    assert generate(model, VOCAB, REQUESTS, config, use_cache=False) == generate(model, VOCAB, REQUESTS, config)


def test_stream_chunks_concatenate_to_the_full_output(model):
    request = REQUESTS[1]
    chunks = list(stream(model, VOCAB, request, SAMPLING, chunk_size=5, first_chunk_size=3))
    full = generate(model, VOCAB, [request], SAMPLING)[0]
    assert [c for chunk in chunks for c in chunk.codes] == full.codes
    assert len(chunks[0].codes) == 3 and len(chunks) > 2   # the first chunk is the short one
    assert all(len(chunk.codes) == 5 and chunk.stop_reason is None for chunk in chunks[1:-1])
    assert chunks[-1].stop_reason == full.stop_reason and 0 < len(chunks[-1].codes) <= 5


def test_generation_restores_training_mode(model):
    model.train()
    generate(model, VOCAB, REQUESTS[:1], SAMPLING)
    assert model.training
    model.eval()


def test_prompt_layout_is_prompt_text_then_text_then_task_then_prompt_speech():
    t, s = VOCAB.text_offset, VOCAB.speech_offset
    prefix = VOCAB.prompt([3, 4], speaker="awb", prompt_text=[1, 2], prompt_codes=[7, 8])
    assert prefix == [SOS, VOCAB.speaker_id("awb"), t + 1, t + 2, t + 3, t + 4, TASK, s + 7, s + 8]


def test_voice_prompt_continuation_speaks_the_rest_of_a_memorised_utterance():
    rng = random.Random(1)
    prompt_text, text = [3, 9, 27], [14, 2, 30, 8]
    prompt_codes = [rng.randrange(4096) for _ in range(8)]
    codes = [rng.randrange(4096) for _ in range(12)]
    torch.manual_seed(0)
    model = MiniMindTTS(SMALL, VOCAB.size)
    batch = collate([VOCAB.example(prompt_text + text, prompt_codes + codes)])
    overfit(model, batch, steps=200)
    request = Request(tuple(text), prompt_text=tuple(prompt_text), prompt_codes=tuple(prompt_codes))
    result = generate(model, VOCAB, [request], GenerationConfig(temperature=0.0, min_len_ratio=0.0, max_len_ratio=6))[0]
    assert result.codes == codes and result.stop_reason == "eos"
    assert result.max_len == 6 * len(text)  # limits follow the new text only, not the prompt's
