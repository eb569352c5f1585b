"""The LM's batch planner: per-epoch dynamic batches of utterance indices, from sequence lengths alone.

    # batches per epoch and their padding, without training (the command line of stages/train/data.py):
    python -m stages.train.data --codes results/demo/codes/shard-*.parquet --tokenizer results/demo/tokenizer \
        [--config-json '{"batch_tokens": 6000}']

Every epoch, `plan_epoch` turns the index into batches CosyVoice's way: row groups in a seeded order, a
shuffle buffer, a sort buffer, then dynamic batches that fill a padded-token budget. Plain functions of
lengths, so a plan is cheap, testable and the same on every process: a resumed run skips the batches it
already trained on without reading them, and sees exactly the batches an uninterrupted run would. The
global batch list is split round-robin across processes, after `balance` splits a few batches so that
every process gets the same number of steps (and data.py balances the rest of an epoch anew when a run
resumes with another number of processes).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from stages.lm.vocab import Vocab
from stages.train.corpus import CorpusIndex, overhead


def dynamic_batches(order: Sequence[int], lengths: np.ndarray, batch_tokens: int) -> list[list[int]]:
    """Consecutive runs of `order` whose padded size (longest x count) stays within `batch_tokens`."""
    batches: list[list[int]] = []
    batch: list[int] = []
    longest = 0
    for i in order:
        i = int(i)
        length = int(lengths[i])
        if batch and max(longest, length) * (len(batch) + 1) > batch_tokens:
            batches.append(batch)
            batch, longest = [], 0
        batch.append(i)
        longest = max(longest, length)
    if batch:
        batches.append(batch)
    return batches


def balance(batches: list[list[int]], world_size: int) -> tuple[list[list[int]], int]:
    """Make the batch count a multiple of `world_size`, so every process runs the same number of steps.

    The batch with the most utterances is split in two (each half still fits the budget) until the count
    divides; only if no batch has two utterances left are the last few dropped. Returns (batches, dropped).
    """
    batches = [list(b) for b in batches]
    while len(batches) % world_size:
        k = max(range(len(batches)), key=lambda j: len(batches[j]))
        if len(batches[k]) < 2:
            extra = len(batches) % world_size
            return batches[:-extra], sum(len(b) for b in batches[-extra:])
        half = len(batches[k]) // 2
        batches[k:k + 1] = [batches[k][:half], batches[k][half:]]
    return batches, 0


def plan_epoch(units: Sequence[np.ndarray], lengths: np.ndarray, epoch: int, seed: int, shuffle_buffer: int,
               sort_buffer: int, batch_tokens: int, world_size: int = 1) -> list[list[int]]:
    """The global batches of one epoch (utterance indices), the same on every process.

    Row groups are visited in an order drawn from (seed, epoch) and their utterances pass a shuffle buffer
    (each full buffer is permuted and emptied) and a sort buffer (each full buffer is sorted by length and
    emptied) into dynamic batches: CosyVoice's pipeline, driven by lengths only.
    """
    rng = np.random.default_rng([seed, epoch])
    stream = [units[u] for u in rng.permutation(len(units))]
    flat = np.concatenate(stream) if stream else np.zeros(0, dtype=np.int64)
    shuffled = np.concatenate([chunk[rng.permutation(len(chunk))] for chunk in _chunks(flat, shuffle_buffer)] or [flat])
    ordered = np.concatenate([chunk[np.argsort(lengths[chunk], kind="stable")]
                              for chunk in _chunks(shuffled, sort_buffer)] or [shuffled])
    batches, _ = balance(dynamic_batches(ordered, lengths, batch_tokens), world_size)
    return batches


def plan_sorted(indices: np.ndarray, lengths: np.ndarray, batch_tokens: int, world_size: int = 1) -> list[list[int]]:
    """Unshuffled batches of `indices` sorted by length: the fixed validation batches."""
    order = indices[np.argsort(lengths[indices], kind="stable")]
    batches, _ = balance(dynamic_batches(order, lengths, batch_tokens), world_size)
    return batches


def _chunks(array: np.ndarray, size: int) -> list[np.ndarray]:
    return [array[i:i + size] for i in range(0, len(array), size)]


def nonpad_share(batches: Sequence[Sequence[int]], lengths: np.ndarray) -> float:
    """Real tokens / padded tokens over a list of batches."""
    real = sum(int(lengths[b].sum()) for b in batches)
    padded = sum(int(lengths[b].max()) * len(b) for b in batches)
    return real / padded if padded else 1.0


def validation_batches(index: CorpusIndex, vocab: Vocab, speaker_tokens: bool, batch_tokens: int, rank: int = 0,
                       world_size: int = 1) -> list[list[int]]:
    """This process's share of the fixed, length-sorted validation batches (a plan; data.read_batches reads it)."""
    if len(index) == 0:
        return []
    lengths = index.seq_lengths(overhead(speaker_tokens))
    return plan_sorted(np.arange(len(index)), lengths, batch_tokens, world_size)[rank::world_size]
