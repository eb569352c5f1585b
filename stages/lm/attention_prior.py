"""An attention prior that teaches the LM early in training to read its text in order.

    bias = alignment_prior(batch.input_ids, vocab, width=2.0) * prior_weight(step, steps=400)
    out = model(batch.input_ids, targets=batch.targets, attention_bias=bias)

Why: a decoder-only TTS model first learns the speech codes on their own (what sounds follow what), and
only much later that the text decides what is said. Measured on the 4,000-sentence quality run after 800
steps: the held-out loss of the speech codes with their own text was 2.86 against 2.90 with another
sentence's text, and Whisper heard fluent English that had nothing to do with the text. The prior is
T5-TTS's remedy (Neekhara et al. 2024, an attention prior annealed away during training), here added to
the attention logits of a speech query over the text keys: the query of the t-th of T speech positions
is pulled towards text token t * S / T of the S, a Gaussian of `width` tokens. Speaker, SOS and TASK keys,
and the speech keys, get no bias, so only which text a query reads is guided, not how much it reads the
speech before it. The weight falls to 0 before training ends, so the model learns to find its place in
the text alone, and inference (which knows no T) runs without it.
"""

from __future__ import annotations

import torch
from torch import Tensor

from stages.lm.vocab import Vocab


def alignment_prior(input_ids: Tensor, vocab: Vocab, width: float) -> Tensor:
    """Additive attention bias (B, L, L), query by key: -(s - c_t)^2 / (2 width^2) from a speech query to a
    text key, where s is the key's index among the row's text tokens and c_t the text index the query's share
    of the speech is at; 0 everywhere else.

    Speech queries are the TASK token (it predicts the first code) and every code (the last predicts EOS),
    so with S text tokens and T queries, query t expects text (t + 0.5) * S / T - 0.5.
    """
    if width <= 0:
        raise ValueError(f"width: {width} must be positive (in text tokens)")
    is_text = (input_ids >= vocab.text_offset) & (input_ids < vocab.text_offset + vocab.n_text)
    is_speech = (input_ids >= vocab.speech_offset) & (input_ids < vocab.speech_offset + vocab.n_speech)
    is_query = is_speech | (input_ids == vocab.task)
    n_text = is_text.sum(dim=1, keepdim=True).clamp(min=1).float()
    n_query = is_query.sum(dim=1, keepdim=True).clamp(min=1).float()
    text_index = (is_text.long().cumsum(dim=1) - 1).float()
    query_index = (is_query.long().cumsum(dim=1) - 1).float()
    log_prior = diagonal_log_gaussian(text_index[:, None, :], query_index[:, :, None], n_text[:, :, None],
                                      n_query[:, :, None], width)
    applies = is_query[:, :, None] & is_text[:, None, :]
    return torch.where(applies, log_prior, torch.zeros((), device=input_ids.device))


def diagonal_log_gaussian(text_index: Tensor, query_index: Tensor, n_text: Tensor, n_query: Tensor,
                          width: float) -> Tensor:
    """-(s - c_t)^2 / (2 width^2) for text index s and query index t (broadcast), where query t of T expects
    text c_t = (t + 0.5) * S / T - 0.5 of the S; shared by this prior and the alignment loss's."""
    expected = (query_index + 0.5) * n_text / n_query - 0.5
    return -(text_index - expected).pow(2) / (2 * width ** 2)


def prior_weight(step: int, steps: int) -> float:
    """The prior's weight at optimizer step `step` (0-based): 1 for the first half of `steps`, then falling
    linearly to 0 at `steps`; 0 from there on, and always 0 when steps is 0 (no prior)."""
    if steps <= 0 or step >= steps:
        return 0.0
    half = steps / 2
    return 1.0 if step < half else (steps - step) / (steps - half)
