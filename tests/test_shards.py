"""Stable sharding and splitting: the same on every machine, and adding data moves nothing."""

from __future__ import annotations

from collections import Counter

from stages.common.shards import shard_of, split_of


def test_shards_are_stable_and_balanced():
    ids = [f"utt{i:05d}" for i in range(4000)]
    first = [shard_of(u, 8) for u in ids]
    assert first == [shard_of(u, 8) for u in ids]
    assert shard_of("demo_awb_0001", 8) == 2  # pinned: a change of hash would reshuffle every user's shards
    counts = Counter(first)
    assert set(counts) == set(range(8)) and max(counts.values()) < 1.2 * min(counts.values())


def test_adding_utterances_does_not_move_existing_ones():
    old = {f"utt{i}": shard_of(f"utt{i}", 4) for i in range(100)}
    new = {f"utt{i}": shard_of(f"utt{i}", 4) for i in range(200)}
    assert all(new[k] == v for k, v in old.items())


def test_split_is_by_sentence_and_respects_fractions():
    assert split_of("Hello  World", 0.3, 0.3) == split_of("hello world", 0.3, 0.3)
    splits = Counter(split_of(f"sentence {i}", 0.1, 0.2) for i in range(5000))
    assert abs(splits["eval"] / 5000 - 0.1) < 0.02 and abs(splits["valid"] / 5000 - 0.2) < 0.02
    assert split_of("anything", 0.0, 0.0) == "train"
