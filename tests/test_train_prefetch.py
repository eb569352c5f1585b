"""Batches built ahead in a thread (stages/train/prefetch.py) and step statistics read only when logged (engine.py).

    .venv/bin/python -m pytest tests/test_train_prefetch.py -q
"""

from __future__ import annotations

import threading
import time

import pytest
import torch

from stages.lm.vocab import Vocab
from stages.train.corpus import Subset, index_corpus
from stages.train.data import TrainBatches
from stages.train.engine import StepSums
from stages.train.prefetch import Prefetched
from stages.text.tokenizer import TextTokenizer
from train_corpus import CODEBOOK, fit_tiny_tokenizer, utterances, write_shards


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> TrainBatches:
    root = tmp_path_factory.mktemp("prefetch")
    codes = write_shards(root / "codes", utterances(60, frames=(1, 2)))
    tokenizer = TextTokenizer.load(fit_tiny_tokenizer(root))
    index = index_corpus(codes, tokenizer, Subset(("train",), (), ()), 1, 10_000, 4096, 2)
    vocab = Vocab(n_text=tokenizer.vocab_size, n_speech=CODEBOOK)
    return TrainBatches(index, vocab, False, 400, 64, 32, seed=3)


def take(stream, n: int) -> list:
    return [next(stream) for _ in range(n)]


def test_prefetched_batches_and_positions_equal_the_stream_in_order(data):
    steps = 3 * len(data) + 2    # across epoch boundaries
    expected = take(data.stream(), steps)
    with Prefetched(data.stream(), depth=2) as stream:
        got = take(stream, steps)
    assert [p for _, p in got] == [p for _, p in expected]
    for (a, _), (b, _) in zip(got, expected):
        assert a.utt_ids == b.utt_ids
        assert torch.equal(a.input_ids, b.input_ids) and torch.equal(a.targets, b.targets)


def test_a_resumed_prefetched_stream_continues_from_the_last_batch_consumed(data):
    with Prefetched(data.stream(), depth=3) as stream:
        first = take(stream, 4)
        time.sleep(0.2)          # let the thread build ahead: what it built but nobody took must not count
    position = first[-1][1]
    with Prefetched(data.stream(position), depth=3) as stream:
        resumed = take(stream, 3)
    assert [b.utt_ids for b, _ in resumed] == [b.utt_ids for b, _ in take(data.stream(), 7)[4:]]


def test_an_error_in_the_stream_is_raised_where_its_item_was_due():
    def failing():
        yield "a", 1
        raise ValueError("shard-00001.parquet: utterance x has 3 codes but n_frames says 4")

    stream = Prefetched(failing())
    assert next(stream) == ("a", 1)
    with pytest.raises(ValueError, match="n_frames says 4"):
        next(stream)
    with pytest.raises(StopIteration):
        next(stream)
    stream.close()
    assert not stream.thread.is_alive()


def test_closing_stops_a_thread_waiting_for_room():
    def endless():
        i = 0
        while True:
            yield i, i
            i += 1

    stream = Prefetched(endless(), depth=1)
    assert next(stream) == (0, 0)
    stream.close()
    assert not stream.thread.is_alive()
    assert threading.active_count() < 50


def test_a_finite_stream_ends_with_stop_iteration():
    assert list(Prefetched(iter([(1, "p1"), (2, "p2")]))) == [(1, "p1"), (2, "p2")]


def test_depth_must_be_positive():
    with pytest.raises(ValueError, match="at least 1"):
        Prefetched(iter([]), depth=0)


def test_step_sums_add_without_reading_and_read_their_totals():
    one = StepSums(torch.tensor([6.0, 3.0, 0.5, 0.0], dtype=torch.float64), targets=4, micro_batches=1,
                   real_tokens=10, padded_tokens=12)
    two = StepSums(torch.tensor([2.0, 1.0, 0.25, 0.0], dtype=torch.float64), targets=4, micro_batches=1,
                   real_tokens=8, padded_tokens=8)
    stats = StepSums().add(one).add(two).read()
    assert stats.loss == pytest.approx(1.0)              # (6 + 2) / (4 + 4)
    assert stats.accuracy == pytest.approx(0.5)
    assert stats.aux_sum == pytest.approx(0.75)
    assert (stats.micro_batches, stats.real_tokens, stats.padded_tokens) == (2, 18, 20)
    assert stats.nonpad_share == pytest.approx(0.9)
    assert StepSums().read().loss == 0.0                  # an empty window reads as zeros, not a division error
