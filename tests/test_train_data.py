"""Tests of the LM training data: index, filters, dynamic batches, per-epoch shuffling, resume, rank sharding.

    PYTHONPATH=. .venv/bin/python -m pytest tests/test_train_data.py -q
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from stages.lm.vocab import IGNORE_INDEX, Vocab
from stages.common.tables import TableError
from stages.train.batching import balance, dynamic_batches, nonpad_share, plan_epoch, validation_batches
from stages.train.corpus import Subset, codec_metadata, index_corpus, overhead
from stages.train.data import Position, SpeakerTokens, TrainBatches, drops_speaker, read_batches
from train_corpus import CODEBOOK, METADATA, SPEAKERS, utterances, write_shards


class CharTokenizer:
    """a..z -> 1..26, anything else -> 0: enough to test the data path without sentencepiece."""

    vocab_size = 27

    def encode(self, text: str, language: str) -> list[int]:
        return [ord(c) - 96 if "a" <= c <= "z" else 0 for c in text]


VOCAB = Vocab(n_text=CharTokenizer.vocab_size, n_speech=CODEBOOK, speakers=SPEAKERS)
ROWS = utterances(200, seed=1)


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    return write_shards(tmp_path_factory.mktemp("codes"), ROWS, n_shards=3, row_group_size=7)


def train_ids(rows=ROWS, split="train") -> set[str]:
    return {r["utt_id"] for r in rows if r["split"] == split}


def batches_of(shards, subset=Subset(), world_size=1, rank=0, seed=0, batch_tokens=800, **kw) -> TrainBatches:
    index = index_corpus(shards, CharTokenizer(), subset)
    return TrainBatches(index, VOCAB, True, batch_tokens, kw.get("shuffle_buffer", 50), kw.get("sort_buffer", 20),
                        seed, rank, world_size, kw.get("speaker_dropout", 0.0))


def realistic_lengths(n: int, seed: int = 0) -> np.ndarray:
    """Sequence lengths of 2-8 s utterances at 75 codes/s plus 10-40 text tokens, like the demo corpus."""
    rng = np.random.default_rng(seed)
    seconds = np.clip(rng.lognormal(np.log(4.0), 0.35, n), 1.5, 9.0)
    return (seconds * 75).astype(int) + rng.integers(10, 40, n) + 3


def test_every_train_utterance_once_per_epoch_and_never_valid_or_eval(shards):
    data = batches_of(shards)
    for epoch in range(2):
        data.set_epoch(epoch)
        seen = [u for batch in data for u in batch.utt_ids]
        assert sorted(seen) == sorted(train_ids())
    assert not set(seen) & (train_ids(split="valid") | train_ids(split="eval"))


def test_batches_respect_the_padded_token_budget_and_align_targets(shards):
    data = batches_of(shards, batch_tokens=600)
    for batch in data:
        assert batch.input_ids.numel() <= 600
        assert batch.input_ids.shape == batch.targets.shape
        assert batch.real_tokens == int((batch.input_ids != VOCAB.pad).sum())
        # each row: [SOS] [SPK] text [TASK] codes, targets only on codes and EOS
        first = batch.input_ids[0]
        assert first[0] == VOCAB.sos and VOCAB.speaker_offset <= first[1] < VOCAB.text_offset
        assert int((batch.targets[0] == VOCAB.eos).sum()) == 1
        assert int((batch.targets[0] != IGNORE_INDEX).sum()) == int((first >= VOCAB.speech_offset).sum()) + 1


def test_dynamic_batches_fill_but_never_exceed_the_budget():
    lengths = realistic_lengths(2000)
    order = np.argsort(lengths)
    batches = dynamic_batches(order, lengths, 6000)
    assert sorted(i for b in batches for i in b) == list(range(2000))
    assert all(lengths[b].max() * len(b) <= 6000 for b in batches)
    # a batch closed early would have room for its successor
    for b, nxt in zip(batches, batches[1:]):
        assert max(lengths[b].max(), lengths[nxt[0]]) * (len(b) + 1) > 6000


def test_padding_share_of_realistic_lengths_with_the_default_buffers():
    lengths = realistic_lengths(5000, seed=3)
    units = [np.arange(i, min(i + 256, 5000)) for i in range(0, 5000, 256)]  # 256-row groups, as written
    plan = plan_epoch(units, lengths, epoch=0, seed=0, shuffle_buffer=1000, sort_buffer=500, batch_tokens=6000)
    assert nonpad_share(plan, lengths) >= 0.95
    unsorted = plan_epoch(units, lengths, epoch=0, seed=0, shuffle_buffer=1000, sort_buffer=1, batch_tokens=6000)
    assert nonpad_share(unsorted, lengths) < 0.8  # the sort buffer is what removes the padding


def test_epochs_differ_and_are_seeded(shards):
    a, b, other_seed = batches_of(shards), batches_of(shards), batches_of(shards, seed=1)
    plans = {}
    for epoch in range(3):
        a.set_epoch(epoch), b.set_epoch(epoch), other_seed.set_epoch(epoch)
        assert a.plan() == b.plan()
        assert a.plan() != other_seed.plan()
        plans[epoch] = a.plan()
    assert plans[0] != plans[1] != plans[2]
    a.set_epoch(0)
    assert a.plan() == plans[0]  # an epoch's order depends on nothing but (seed, epoch)


def test_resuming_at_a_position_gives_exactly_the_remaining_batches(shards):
    data = batches_of(shards)
    per_epoch = len(data)
    run = list(itertools.islice(data.stream(), 2 * per_epoch + 3))  # crosses two epoch boundaries
    for cut in (1, per_epoch - 1, per_epoch, per_epoch + 2):
        _, position = run[cut - 1]
        resumed = list(itertools.islice(batches_of(shards).stream(position), len(run) - cut))
        for (expected, expected_pos), (got, got_pos) in zip(run[cut:], resumed):
            assert got.utt_ids == expected.utt_ids and got_pos == expected_pos
            assert torch.equal(got.input_ids, expected.input_ids) and torch.equal(got.targets, expected.targets)
    assert run[per_epoch - 1][1] == Position(0, per_epoch, 1)
    assert run[per_epoch][1] == Position(1, 1, 1)


def test_ranks_get_disjoint_complete_equal_shares(shards):
    world = 3
    ranks = [batches_of(shards, world_size=world, rank=r) for r in range(world)]
    for epoch in range(2):
        for r in ranks:
            r.set_epoch(epoch)
        shares = [[u for batch in r for u in batch.utt_ids] for r in ranks]
        assert len({len(r) for r in ranks}) == 1  # same number of steps, or the collectives would hang
        flat = [u for share in shares for u in share]
        assert len(flat) == len(set(flat))
        assert set(flat) == train_ids()


def test_balance_splits_batches_until_the_count_divides():
    batches = [[0, 1, 2, 3], [4, 5], [6]]
    balanced, dropped = balance(batches, 4)
    assert len(balanced) == 4 and dropped == 0
    assert sorted(i for b in balanced for i in b) == list(range(7))
    assert balance([[0], [1], [2]], 2) == ([[0], [1]], 1)  # nothing left to split: the remainder is dropped


def test_sft_subset_filters(shards):
    index = index_corpus(shards, CharTokenizer(), Subset(speakers=("rms",)))
    assert set(index.speakers) == {"rms"} and sorted(index.utt_ids) == sorted(
        r["utt_id"] for r in ROWS if r["split"] == "train" and r["speaker"] == "rms")
    both = index_corpus(shards, CharTokenizer(), Subset(splits=("train", "valid"), speakers=("awb", "slt")))
    assert sorted(both.utt_ids) == sorted(r["utt_id"] for r in ROWS
                                          if r["split"] != "eval" and r["speaker"] in ("awb", "slt"))
    assert len(index_corpus(shards, CharTokenizer(), Subset(languages=("zh",)))) == 0
    with pytest.raises(ValueError, match="eval"):
        Subset(splits=("train", "eval"))


def test_length_filters_count_what_they_drop(shards):
    lengths = [r["n_frames"] for r in ROWS if r["split"] == "train"]
    low, high = int(np.percentile(lengths, 20)), int(np.percentile(lengths, 80))
    index = index_corpus(shards, CharTokenizer(), Subset(), min_codes=low, max_codes=high)
    assert index.dropped["too_few_codes"] == sum(n < low for n in lengths)
    assert index.dropped["too_many_codes"] == sum(n > high for n in lengths)
    assert len(index) + sum(index.dropped.values()) == len(lengths)
    tight = index_corpus(shards, CharTokenizer(), Subset(), max_seq_len=100, overhead=overhead(True))
    assert tight.dropped["sequence_too_long"] > 0 and tight.seq_lengths(overhead(True)).max() <= 100


def test_text_is_tokenised_once_per_distinct_sentence(shards):
    class Counting(CharTokenizer):
        calls = 0

        def encode(self, text, language):
            Counting.calls += 1
            return super().encode(text, language)

    index_corpus(shards, Counting(), Subset(splits=("train", "valid")))
    assert Counting.calls == len({r["text"] for r in ROWS if r["split"] != "eval"})


def test_validation_batches_are_fixed_and_cover_the_valid_split(shards):
    index = index_corpus(shards, CharTokenizer(), Subset(splits=("valid",)))
    plans = [validation_batches(index, VOCAB, True, 800, rank, 2) for rank in range(2)]
    assert plans == [validation_batches(index, VOCAB, True, 800, rank, 2) for rank in range(2)]
    ids = [u for plan in plans for batch in read_batches(index, plan, VOCAB, SpeakerTokens(True)) for u in batch.utt_ids]
    assert sorted(ids) == sorted(train_ids(split="valid"))


def test_codec_metadata_must_agree_across_shards(tmp_path, shards):
    assert codec_metadata(shards) == METADATA
    other = write_shards(tmp_path / "other", ROWS[:10], n_shards=1, metadata={**METADATA, "codec_id": "another"})
    with pytest.raises(ValueError, match="codec_id 'test-codec-0001' vs 'another'"):
        codec_metadata([*shards, *other])
    bare = write_shards(tmp_path / "bare", ROWS[:10], n_shards=1, metadata={"frame_rate": "75.0"})
    with pytest.raises(TableError, match="lacks codec metadata"):
        codec_metadata(bare)


def test_codes_that_disagree_with_n_frames_are_an_error(tmp_path):
    rows = [dict(r) for r in ROWS[:20]]
    rows[0]["n_frames"] += 1
    shards = write_shards(tmp_path, rows, n_shards=1)
    index = index_corpus(shards, CharTokenizer(), Subset(splits=("train", "valid")))
    with pytest.raises(TableError, match="n_frames"):
        list(read_batches(index, [list(range(len(index)))], VOCAB, SpeakerTokens(True)))


def _speaker_positions(batch) -> list[bool]:
    """Per sequence: whether position 1 (right after [SOS]) holds a speaker token."""
    first, last = VOCAB.speaker_offset, VOCAB.speaker_offset + len(VOCAB.speakers)
    return [bool(first <= int(ids[1]) < last) for ids in batch.input_ids]


def test_a_share_of_training_sequences_drops_the_speaker_token_anew_each_epoch(shards):
    data = batches_of(shards, speaker_dropout=0.3)
    kept = {}
    for epoch in range(2):
        data.set_epoch(epoch)
        kept[epoch] = {u: has for batch in data for u, has in zip(batch.utt_ids, _speaker_positions(batch))}
    for epoch, flags in kept.items():
        assert 0.15 < 1 - sum(flags.values()) / len(flags) < 0.45  # about 30% without the speaker token
    assert kept[0] != kept[1]  # a different share of utterances each epoch
    data.set_epoch(0)  # and the same again on a rerun: the draw is a hash, not a generator state
    assert kept[0] == {u: has for batch in data for u, has in zip(batch.utt_ids, _speaker_positions(batch))}
    assert all(drops_speaker(u, 0, 0, 1.0) for u in kept[0]) and not any(drops_speaker(u, 0, 0, 0.0) for u in kept[0])


def test_without_dropout_and_in_validation_every_sequence_keeps_its_speaker(shards):
    data = batches_of(shards)
    assert all(all(_speaker_positions(batch)) for batch in data)
    index = index_corpus(shards, CharTokenizer(), Subset(splits=("valid",)))
    plan = validation_batches(index, VOCAB, True, 800)
    assert all(all(_speaker_positions(b)) for b in read_batches(index, plan, VOCAB, SpeakerTokens(True)))
