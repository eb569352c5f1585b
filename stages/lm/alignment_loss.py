"""A CTC alignment loss that teaches the LM's attention to read its text once, in order, throughout training.

    positions = alignment_positions(batch.input_ids, vocab)
    out = model(batch.input_ids, targets=batch.targets, alignment=positions)
    loss = out.ce_loss + weight * ctc_alignment_loss(out.alignment_scores[first_layer:], positions)

Why: the alignment prior (attention_prior.py) pulls attention towards the diagonal only while it is applied.
Measured on the 8,000-sentence run after the prior was annealed away (scripts/alignment_trace.py): the
attention-weighted text position of the speech queries lay 0.16-0.24 of the text from the diagonal in every
layer, teacher-forced as in decoding, where a head reading in order is near 0 and one unrelated to time at
0.25. This loss is RAD-TTS's forward-sum loss as T5-TTS applies it to its attention (Neekhara et al. 2024):
in each chosen layer, the heads' attention of every speech query over the text tokens alone (renormalised,
so how much a query reads its text stays free, only where) is taken as a distribution over the S text tokens
plus a blank, and CTC sums the probability of every monotonic path that visits all S tokens in order. It is
a loss, not a bias: inference runs the same attention, with nothing to switch off.

CTC alone accepts any monotonic path, and in a decoder-only model with rotary positions the cheapest is a
position trick, not reading: measured on the 8,000-sentence run with this loss alone (1,600 steps, loss 0.4 a
position), every aligned layer's head-mean attention sat on the first text token for the first ~55% of the
speech, ran through all S tokens at one token a code (a fixed relative offset), then sat on the last. So the
emissions CTC scores get RAD-TTS's static prior in log space, a Gaussian of `prior_width` text tokens around
the diagonal (query t of T expects text (t + 0.5) * S / T - 0.5, as attention_prior.py): a path far from the
diagonal costs d^2 / (2 width^2) a position, while the model's own attention still carries no bias. It is
added after the blank's share is set, or renormalising would hand the blank what it takes from the text.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from stages.lm.attention_prior import diagonal_log_gaussian
from stages.lm.vocab import Vocab

BLANK_LOGIT = -1.0   # RAD-TTS's blank: a fixed logit beside the text's, so a frame may stay between tokens
PADDING_LOGIT = -1e9


@dataclass(frozen=True)
class AlignmentPositions:
    """Per row: the speech queries (TASK, then every code) and the text keys, as padded column indices."""

    query_index: Tensor   # (B, T) long: columns of the speech queries, left-aligned, 0 where padded
    query_count: Tensor   # (B,) long: T_b
    key_index: Tensor     # (B, S) long: columns of the text tokens
    key_count: Tensor     # (B,) long: S_b


def alignment_positions(input_ids: Tensor, vocab: Vocab) -> AlignmentPositions:
    is_text = (input_ids >= vocab.text_offset) & (input_ids < vocab.text_offset + vocab.n_text)
    is_speech = (input_ids >= vocab.speech_offset) & (input_ids < vocab.speech_offset + vocab.n_speech)
    return AlignmentPositions(*_packed(is_speech | (input_ids == vocab.task)), *_packed(is_text))


def _packed(selected: Tensor) -> tuple[Tensor, Tensor]:
    """Column indices of the True entries of each row, left-aligned and padded with 0, and their counts."""
    counts = selected.sum(dim=1)
    width = max(int(counts.max()) if counts.numel() else 0, 1)
    # a stable sort puts the selected columns first, in order
    order = torch.sort((~selected).to(torch.int8), dim=1, stable=True).indices[:, :width]
    valid = torch.arange(width, device=selected.device)[None, :] < counts[:, None]
    return order.masked_fill(~valid, 0), counts


def alignment_scores(q: Tensor, k: Tensor, positions: AlignmentPositions) -> Tensor:
    """Attention logits (B, H, T, S) of the speech queries over the text keys, from one layer's q (B, H, L, D)
    and k (B, H_kv, L, D) after RoPE, the scores its attention takes the softmax of."""
    groups = q.shape[1] // k.shape[1]
    head_dim = q.shape[-1]
    q = q.gather(2, positions.query_index[:, None, :, None].expand(-1, q.shape[1], -1, head_dim))
    k = k.gather(2, positions.key_index[:, None, :, None].expand(-1, k.shape[1], -1, head_dim))
    k = k.repeat_interleave(groups, dim=1)
    return q @ k.transpose(-1, -2) / math.sqrt(head_dim)


def emission_prior(positions: AlignmentPositions, n_query: int, n_key: int, width: float) -> Tensor:
    """(B, T, 1 + S) log-prior on the CTC emissions: 0 for the blank, then a log-Gaussian of `width` text
    tokens around each row's diagonal (attention_prior.diagonal_log_gaussian)."""
    device = positions.key_count.device
    n_text = positions.key_count.clamp(min=1).float()[:, None, None]
    n_speech = positions.query_count.clamp(min=1).float()[:, None, None]
    text_index = torch.arange(n_key, device=device).float()[None, None, :]
    query_index = torch.arange(n_query, device=device).float()[None, :, None]
    return F.pad(diagonal_log_gaussian(text_index, query_index, n_text, n_speech, width), (1, 0))


def ctc_alignment_loss(layer_scores: Sequence[Tensor], positions: AlignmentPositions,
                       prior_width: float = 0.0) -> Tensor:
    """Mean over layers and rows of -log P(a monotonic path through all S text tokens), per speech query.

    Each head's scores are a softmax over the row's text tokens; the heads' probabilities are averaged, so
    the layer reads in order as a whole while single heads may look elsewhere. With `prior_width` the
    emissions get the diagonal prior (module docstring). Divided by T_b (not RAD-TTS's S_b), the loss is per
    speech position, on the scale of the per-code cross-entropy.
    """
    if not layer_scores:
        raise ValueError("no layers to align: alignment_loss_first_layer is past the last layer")
    if prior_width < 0:
        raise ValueError(f"prior_width: {prior_width} must be >= 0 (0: no prior)")
    batch, _, n_query, n_key = layer_scores[0].shape
    key_valid = torch.arange(n_key, device=positions.key_count.device)[None, :] < positions.key_count[:, None]
    targets = torch.arange(1, n_key + 1, device=key_valid.device).expand(batch, n_key)
    prior = emission_prior(positions, n_query, n_key, prior_width) if prior_width else None
    losses = []
    for scores in layer_scores:
        # a large finite logit, not -inf: a padding column that is -inf in every head would make logsumexp's
        # gradient NaN
        scores = scores.float().masked_fill(~key_valid[:, None, None, :], PADDING_LOGIT)
        text = scores.log_softmax(dim=-1).logsumexp(dim=1) - math.log(scores.shape[1])   # (B, T, S)
        blank = torch.full((batch, n_query, 1), BLANK_LOGIT, device=text.device)
        log_probs = torch.cat([blank, text], dim=-1).log_softmax(dim=-1)
        if prior is not None:   # after normalising: renormalised, the blank would take what it removes from the text
            log_probs = log_probs + prior
        loss = F.ctc_loss(log_probs.transpose(0, 1), targets, positions.query_count, positions.key_count,
                          blank=0, reduction="none", zero_infinity=True)
        losses.append(loss / positions.query_count.clamp(min=1))
    return torch.stack(losses).mean()


@dataclass(frozen=True)
class AlignmentObjective:
    """The alignment loss as training applies it: which layers, and its weight beside the cross-entropy."""

    vocab: Vocab
    weight: float
    first_layer: int
    prior_width: float = 0.0

    def positions(self, input_ids: Tensor) -> AlignmentPositions:
        return alignment_positions(input_ids, self.vocab)

    def loss(self, layer_scores: Sequence[Tensor], positions: AlignmentPositions) -> Tensor:
        return ctc_alignment_loss(layer_scores[self.first_layer:], positions, self.prior_width)
