"""The one-stream alignment, pinned: [TASK] predicts s1, sS predicts EOS, only codes and EOS carry loss.

The earlier MiniMind-TTS trained each speech position to predict itself, so its falling loss proved
nothing. These tests fail on that shift, on loss leaking onto text, on padding changing a sample's loss,
and they end with the proof that matters: a model that memorises a few utterances speaks them back.
"""

import random

import pytest
import torch
import torch.nn.functional as F

from conftest import overfit
from stages.config.model import GenerationConfig, ModelConfig
from stages.lm.generate import Request, generate
from stages.lm.model import MiniMindTTS
from stages.lm.vocab import EOS, IGNORE_INDEX, PAD, SOS, TASK, Vocab, collate

VOCAB = Vocab(n_text=40, n_speech=4096, speakers=("awb", "slt"))
SMALL = ModelConfig(dim=64, n_layers=2, n_heads=4, n_kv_heads=2, ffn_dim=128, rope_theta=1e4, max_seq_len=256)


def small_model(seed: int = 0) -> MiniMindTTS:
    torch.manual_seed(seed)
    return MiniMindTTS(SMALL, VOCAB.size).eval()


def test_layout_of_one_utterance():
    t, s = VOCAB.text_offset, VOCAB.speech_offset
    input_ids, targets = VOCAB.example([5, 6, 7], [100, 200])
    assert input_ids == [SOS, t + 5, t + 6, t + 7, TASK, s + 100, s + 200]
    assert targets == [IGNORE_INDEX] * 4 + [s + 100, s + 200, EOS]


def test_task_predicts_first_code_and_last_code_predicts_eos():
    codes = [17, 4095, 0, 3000, 9]
    input_ids, targets = VOCAB.example([1, 2, 3, 4], codes)
    task = input_ids.index(TASK)
    assert targets[task] == VOCAB.speech_ids(codes[:1])[0]
    assert input_ids[-1] == VOCAB.speech_ids(codes[-1:])[0] and targets[-1] == EOS
    # each supervised target is the *next* input token, never the token at its own position
    for position in range(task, len(input_ids) - 1):
        assert targets[position] == input_ids[position + 1] != input_ids[position]
    assert all(t == IGNORE_INDEX for t in targets[:task])


def test_speaker_token_follows_sos_and_carries_no_loss():
    input_ids, targets = VOCAB.example([3, 4], [8, 9], speaker="slt")
    assert input_ids[:2] == [SOS, VOCAB.speaker_id("slt")]
    assert targets[:4] == [IGNORE_INDEX] * 4 and targets[4:] == VOCAB.speech_ids([8, 9]) + [EOS]


def test_no_text_position_carries_loss():
    model = small_model()
    input_ids, targets = VOCAB.example([1, 2, 3, 4, 5], [10, 20, 30])
    out = model(torch.tensor([input_ids]), torch.tensor([targets]))
    out.logits.retain_grad()
    out.loss.backward()
    grad_per_position = out.logits.grad[0].abs().sum(dim=-1)
    task = input_ids.index(TASK)
    assert torch.all(grad_per_position[:task] == 0)          # SOS and text: no loss at all
    assert torch.all(grad_per_position[task:] > 0)           # [TASK], every code: loss on the next token


def test_loss_is_each_positions_own_cross_entropy_without_shift():
    model = small_model()
    input_ids, targets = VOCAB.example([1, 2, 3], [10, 20, 30, 40])
    out = model(torch.tensor([input_ids]), torch.tensor([targets]))
    task = input_ids.index(TASK)
    expected = F.cross_entropy(out.logits[0, task:], torch.tensor(targets[task:]))
    torch.testing.assert_close(out.ce_loss, expected)
    torch.testing.assert_close(out.loss, expected)            # dense model: no auxiliary loss
    assert int(out.n_targets) == 5                           # 4 codes + EOS


def test_task_position_cannot_see_the_speech_it_predicts():
    model = small_model()
    a, _ = VOCAB.example([1, 2, 3], [10, 20, 30])
    b, _ = VOCAB.example([1, 2, 3], [4000, 5, 6])
    la, lb = model(torch.tensor([a])).logits, model(torch.tensor([b])).logits
    task = a.index(TASK)
    torch.testing.assert_close(la[0, :task + 1], lb[0, :task + 1])
    assert not torch.allclose(la[0, task + 1:], lb[0, task + 1:])


def test_padding_and_batch_composition_do_not_change_a_samples_loss():
    model = small_model()
    short = VOCAB.example([1, 2], [10, 11, 12])
    middle = VOCAB.example([3, 4, 5, 6], [20, 21, 22, 23, 24, 25])
    long = VOCAB.example([7, 8, 9, 10, 11, 12, 13], list(range(30, 50)))

    def per_sample_losses(examples):
        batch = collate(examples)
        out = model(batch["input_ids"], batch["targets"])
        return [F.cross_entropy(out.logits[i], batch["targets"][i]) for i in range(len(examples))], out

    (alone,), _ = per_sample_losses([short])
    in_batch, out = per_sample_losses([long, short, middle])
    assert collate([long, short, middle])["input_ids"][1, -1] == PAD
    torch.testing.assert_close(in_batch[1], alone)
    with_mask = model(collate([long, short])["input_ids"], collate([long, short])["targets"],
                      attention_mask=collate([long, short])["attention_mask"])
    torch.testing.assert_close(F.cross_entropy(with_mask.logits[1], collate([long, short])["targets"][1]), alone)
    # the batch loss is the mean over all supervised tokens, i.e. the samples weighted by their length
    counts = torch.tensor([21.0, 4.0, 7.0])
    torch.testing.assert_close(out.ce_loss, (torch.stack(in_batch) * counts).sum() / counts.sum())


def test_overfit_a_few_utterances_then_greedy_decoding_speaks_them_back():
    rng = random.Random(0)
    utterances = [([rng.randrange(VOCAB.n_text) for _ in range(rng.randint(3, 6))],
                   [rng.randrange(VOCAB.n_speech) for _ in range(rng.randint(10, 20))]) for _ in range(4)]
    batch = collate([VOCAB.example(text, codes) for text, codes in utterances])
    model = small_model().train()
    out = overfit(model, batch, steps=300)
    assert out.loss.item() < 0.05 and out.accuracy.item() == 1.0

    greedy = GenerationConfig(temperature=0.0, min_len_ratio=0.0, max_len_ratio=10.0)
    results = generate(model, VOCAB, [Request(tuple(text)) for text, _ in utterances], greedy)
    for (_, codes), result in zip(utterances, results):
        assert result.codes == codes
        assert result.stop_reason == "eos"


@pytest.mark.parametrize("bad", [[-1], [40]])
def test_text_ids_outside_the_tokenizer_are_rejected(bad):
    with pytest.raises(ValueError, match="outside"):
        VOCAB.example(bad, [1])
