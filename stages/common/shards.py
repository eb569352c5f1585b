"""Stable assignment of utterances to shards and of sentences to splits.

    python -c "from stages.common.shards import shard_of; print(shard_of('demo_awb_0001', 8))"

Both use a cryptographic hash of a string, not Python's salted hash(), so every machine and every run
agrees; adding utterances never moves existing ones to another shard or split.
"""

from __future__ import annotations

import hashlib


def stable_unit(key: str) -> float:
    """A number in [0, 1) fixed by `key` alone."""
    digest = hashlib.sha1(key.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def shard_of(utt_id: str, num_shards: int) -> int:
    return int(stable_unit(utt_id) * num_shards)


def shard_name(shard: int) -> str:
    return f"{shard:05d}"


def split_of(text: str, eval_fraction: float, valid_fraction: float) -> str:
    """Split by sentence, not by utterance, so one sentence read by two speakers never straddles splits."""
    u = stable_unit(" ".join(text.lower().split()))
    if u < eval_fraction:
        return "eval"
    if u < eval_fraction + valid_fraction:
        return "valid"
    return "train"
