"""The CTC alignment loss (stages/lm/alignment_loss.py): which positions it reads, that its scores are the
attention's own, that it prefers attention that reads the text in order, and that training applies it."""

import math

import pytest
import torch

import stages.lm.model as lm_model
from stages.config import ConfigError, from_dict
from stages.config.model import ModelConfig
from stages.config.pretrain import TrainConfig
from stages.lm.alignment_loss import AlignmentPositions, alignment_positions, ctc_alignment_loss
from stages.lm.model import MiniMindTTS
from stages.lm.vocab import Vocab, collate

VOCAB = Vocab(n_text=40, n_speech=64, speakers=("awb",))
SMALL = ModelConfig(dim=32, n_layers=2, n_heads=4, n_kv_heads=2, ffn_dim=64, rope_theta=1e4, max_seq_len=128)


def batch(*utterances: tuple[list[int], int]) -> dict:
    return collate([VOCAB.example(text, [c % 64 for c in range(n)], "awb") for text, n in utterances])


def test_queries_are_task_and_the_codes_and_keys_the_text_row_by_row():
    ids = batch(([1, 2, 3], 5), ([4, 5], 9))["input_ids"]
    positions = alignment_positions(ids, VOCAB)
    # SOS, speaker, text, TASK, codes: row 0 has text at 2..4, TASK at 5, codes 6..10; row 1 text 2..3, TASK 4
    assert positions.key_count.tolist() == [3, 2] and positions.query_count.tolist() == [6, 10]
    assert positions.key_index[0].tolist() == [2, 3, 4] and positions.key_index[1, :2].tolist() == [2, 3]
    assert positions.query_index[0, :6].tolist() == list(range(5, 11))
    assert positions.query_index[1].tolist() == list(range(4, 14))


def test_the_scores_are_the_logits_the_attention_takes_the_softmax_of(monkeypatch):
    torch.manual_seed(0)
    model = MiniMindTTS(SMALL, VOCAB.size).eval()
    ids = batch(([1, 2, 3, 4], 7))["input_ids"]
    seen = []
    attend = lm_model.attend

    def recording(q, k, v, mask, causal, dropout):
        seen.append((q, k))
        return attend(q, k, v, mask, causal, dropout)

    monkeypatch.setattr(lm_model, "attend", recording)
    positions = alignment_positions(ids, VOCAB)
    with torch.no_grad():
        plain = model(ids).logits
        out = model(ids, alignment=positions)
    assert torch.equal(plain, out.logits)                      # asking for the scores changes nothing
    assert len(out.alignment_scores) == SMALL.n_layers
    for (q, k), scores in zip(seen[SMALL.n_layers:], out.alignment_scores):
        k = k.repeat_interleave(SMALL.n_heads // SMALL.n_kv_heads, dim=1)
        full = q @ k.transpose(-1, -2) / math.sqrt(SMALL.head_dim)            # (1, H, L, L)
        expected = full[:, :, 6:, 2:6]                                         # TASK and codes over the text
        assert scores.shape == (1, SMALL.n_heads, 8, 4)
        assert torch.allclose(scores, expected, atol=1e-5)


def one_row(scores: torch.Tensor) -> AlignmentPositions:
    n_query, n_key = scores.shape[-2:]
    return AlignmentPositions(torch.arange(n_query)[None], torch.tensor([n_query]),
                              torch.arange(n_key)[None], torch.tensor([n_key]))


def diagonal_scores(n_query: int, n_key: int, reverse: bool = False) -> torch.Tensor:
    centre = (torch.arange(n_query) + 0.5) * n_key / n_query - 0.5
    if reverse:
        centre = n_key - 1 - centre
    return (-(torch.arange(n_key)[None, :] - centre[:, None]) ** 2 * 4.0)[None, None]   # (1, 1, T, S)


def test_attention_that_reads_in_order_costs_least():
    in_order, backwards = diagonal_scores(20, 5), diagonal_scores(20, 5, reverse=True)
    uniform = torch.zeros(1, 1, 20, 5)
    loss = lambda s: float(ctc_alignment_loss([s], one_row(s)))  # noqa: E731
    assert loss(in_order) < 0.5 < loss(uniform) < loss(backwards)
    # heads are averaged: one head reading in order beside one looking anywhere still scores well
    two_heads = torch.cat([in_order, uniform], dim=1)
    assert loss(in_order) < loss(two_heads) < loss(uniform)


def race_scores(n_query: int, n_key: int, start: int) -> torch.Tensor:
    """The measured shortcut: hold the first text token, run through the text a token a query, hold the last."""
    token = (torch.arange(n_query) - start).clamp(0, n_key - 1)
    return (-(torch.arange(n_key)[None, :] - token[:, None]) ** 2 * 4.0)[None, None].float()


def test_the_diagonal_prior_makes_the_position_shortcut_cost_more_than_reading():
    reading, shortcut = diagonal_scores(60, 12), race_scores(60, 12, start=30)
    loss = lambda s, width: float(ctc_alignment_loss([s], one_row(s), prior_width=width))  # noqa: E731
    assert loss(shortcut, 0.0) < 0.35 and loss(reading, 0.0) < 0.35     # CTC alone takes either path
    assert loss(shortcut, 3.0) > 3 * loss(reading, 3.0)
    assert loss(shortcut, 3.0) > loss(shortcut, 0.0) + 0.25
    assert loss(reading, 3.0) == pytest.approx(loss(reading, 0.0), abs=0.02)   # reading in order pays ~nothing
    with pytest.raises(ValueError, match="prior_width"):
        loss(reading, -1.0)


def test_rows_are_scored_alone_whatever_they_are_padded_to():
    short, long = diagonal_scores(8, 3), diagonal_scores(20, 5)
    padded = torch.full((2, 1, 20, 5), 3.0)   # padding of any value must not count
    padded[0, :, :8, :3], padded[1] = short[0], long[0]
    positions = AlignmentPositions(torch.zeros(2, 20, dtype=torch.long), torch.tensor([8, 20]),
                                   torch.zeros(2, 5, dtype=torch.long), torch.tensor([3, 5]))
    both = ctc_alignment_loss([padded.requires_grad_()], positions, prior_width=2.0)
    alone = (ctc_alignment_loss([short], one_row(short), prior_width=2.0)
             + ctc_alignment_loss([long], one_row(long), prior_width=2.0)) / 2
    assert float(both.detach()) == pytest.approx(float(alone), rel=1e-5)
    both.backward()
    assert torch.isfinite(padded.grad).all() and padded.grad[0, :, 8:].abs().sum() == 0


def test_through_the_model_a_padded_batch_has_finite_gradients():
    torch.manual_seed(0)
    model = MiniMindTTS(SMALL, VOCAB.size)
    data = batch(([1, 2, 3], 6), ([4, 5, 6, 7, 8, 9], 14))
    positions = alignment_positions(data["input_ids"], VOCAB)
    out = model(data["input_ids"], targets=data["targets"], alignment=positions)
    loss = ctc_alignment_loss(out.alignment_scores[1:], positions)
    assert math.isfinite(loss.item()) and loss.item() > 0
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    assert model.blocks[1].attn.q_proj.weight.grad.abs().sum() > 0
    assert model.blocks[0].attn.q_proj.weight.grad.abs().sum() > 0     # through layer 1's input


def test_the_first_aligned_layer_must_exist():
    with pytest.raises(ConfigError, match="alignment_loss_first_layer: 6 is not below the small preset's n_layers 6"):
        from_dict(TrainConfig, {"model": "small", "max_steps": 10, "alignment_loss_weight": 0.5,
                                "alignment_loss_first_layer": 6}, "pretrain")
    assert from_dict(TrainConfig, {"model": "small", "max_steps": 10, "alignment_loss_first_layer": 6},
                     "pretrain").alignment_loss_weight == 0.0   # off: the layer is not checked
