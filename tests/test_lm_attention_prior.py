"""The alignment prior (stages/lm/attention_prior.py): where it pulls, what it leaves alone, its schedule, and
that training applies it only while its weight lasts."""

import pytest
import torch

from stages.config import ConfigError, from_dict
from stages.config.model import ModelConfig
from stages.config.pretrain import TrainConfig
from stages.lm.attention_prior import alignment_prior, prior_weight
from stages.lm.model import KVCache, MiniMindTTS
from stages.lm.vocab import Vocab, collate

VOCAB = Vocab(n_text=40, n_speech=64, speakers=("awb",))
SMALL = ModelConfig(dim=32, n_layers=2, n_heads=4, n_kv_heads=2, ffn_dim=64, rope_theta=1e4, max_seq_len=128)


def batch(*utterances: tuple[list[int], int]) -> dict:
    return collate([VOCAB.example(text, [c % 64 for c in range(n)], "awb") for text, n in utterances])


def test_each_speech_position_is_pulled_to_the_text_at_its_share_of_the_utterance():
    ids = batch(([1, 2, 3, 4], 8))["input_ids"]
    bias = alignment_prior(ids, VOCAB, width=1.0)[0]
    is_text = (ids[0] >= VOCAB.text_offset) & (ids[0] < VOCAB.text_offset + VOCAB.n_text)
    queries = [p for p, token in enumerate(ids[0].tolist()) if token == VOCAB.task or token >= VOCAB.speech_offset]
    assert len(queries) == 9                                  # TASK and the 8 codes
    nearest = [int(bias[q][is_text].argmax()) for q in queries]
    assert nearest[0] == 0 and nearest[-1] == 3               # starts at the first text token, ends at the last
    assert nearest == sorted(nearest) and set(nearest) == {0, 1, 2, 3}   # in order, every token read
    assert bias[queries[4]][is_text].max() == pytest.approx(-0.5 ** 2 / 2)   # query 4 of 9 expects text 1.5
    assert bias[queries[0]][is_text][3] == pytest.approx(-(3 - (0.5 * 4 / 9 - 0.5)) ** 2 / 2)
    # nothing but speech queries over text keys is biased: not SOS, speaker, TASK or speech keys, not text queries
    others = torch.ones_like(bias, dtype=torch.bool)
    others[torch.tensor(queries)[:, None], is_text.nonzero().T] = False
    assert bias[others].abs().max() == 0


def test_rows_of_a_batch_each_get_their_own_prior_and_padding_none():
    ids = batch(([1, 2], 3), ([5, 6, 7, 8, 9, 10], 12))["input_ids"]
    both = alignment_prior(ids, VOCAB, width=2.0)
    for row, (text, n) in enumerate((([1, 2], 3), ([5, 6, 7, 8, 9, 10], 12))):
        alone = alignment_prior(batch((text, n))["input_ids"], VOCAB, width=2.0)[0]
        length = alone.shape[0]
        assert torch.equal(both[row, :length, :length], alone)
        assert both[row, length:].abs().sum() == 0 and both[row, :, length:].abs().sum() == 0


def test_a_wider_prior_cuts_less_and_a_width_of_zero_is_refused():
    ids = batch(([1, 2, 3, 4, 5, 6], 10))["input_ids"]
    narrow, wide = alignment_prior(ids, VOCAB, 1.0), alignment_prior(ids, VOCAB, 3.0)
    assert torch.allclose(wide * 9, narrow)
    with pytest.raises(ValueError, match="width"):
        alignment_prior(ids, VOCAB, 0.0)


def test_weight_is_full_for_the_first_half_then_falls_to_zero():
    assert [prior_weight(s, 10) for s in range(12)] == [1, 1, 1, 1, 1, 1, 0.8, 0.6, 0.4, 0.2, 0, 0]
    assert prior_weight(0, 0) == 0.0


def test_a_zero_bias_is_no_bias_and_a_blocking_one_keeps_the_text_from_the_speech():
    torch.manual_seed(0)
    model = MiniMindTTS(SMALL, VOCAB.size).eval()
    spoken = batch(([1, 2, 3, 4], 10))
    other_text = batch(([9, 8, 7, 6], 10))
    with torch.no_grad():
        plain = model(spoken["input_ids"]).logits
        zero = model(spoken["input_ids"], attention_bias=torch.zeros(1, *spoken["input_ids"].shape[1:] * 2)).logits
        assert torch.allclose(plain, zero, atol=1e-5)
        # -1e4 on every text key of every speech query: no speech position can read the text, in any layer
        block = lambda ids: alignment_prior(ids, VOCAB, 1.0).ne(0) * -1e4  # noqa: E731
        speech = slice(7, None)   # SOS, speaker, 4 text tokens, then TASK at 6 and the codes
        a = model(spoken["input_ids"], attention_bias=block(spoken["input_ids"])).logits[:, speech]
        b = model(other_text["input_ids"], attention_bias=block(other_text["input_ids"])).logits[:, speech]
        assert torch.allclose(a, b, atol=1e-5)
        assert not torch.allclose(plain[:, speech], model(other_text["input_ids"]).logits[:, speech], atol=1e-3)


def test_the_bias_is_refused_in_cached_decoding():
    model = MiniMindTTS(SMALL, VOCAB.size).eval()
    ids = batch(([1, 2], 4))["input_ids"]
    with pytest.raises(ValueError, match="attention_bias is for training"):
        model(ids, cache=KVCache(SMALL, 1, 64), attention_bias=alignment_prior(ids, VOCAB, 2.0))


def test_the_prior_must_end_before_training_does():
    base = {"max_steps": 100, "alignment_prior_steps": 100}
    with pytest.raises(ConfigError, match="pretrain.alignment_prior_steps: 100 is not below max_steps 100"):
        from_dict(TrainConfig, base, "pretrain")
    assert from_dict(TrainConfig, {**base, "alignment_prior_steps": 60}, "pretrain").alignment_prior_steps == 60
