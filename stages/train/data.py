"""The LM's training data as tensors: each process's planned batches, read from the codes Parquet, resumably.

    python -m stages.train.data --codes results/demo/codes/shard-*.parquet --tokenizer results/demo/tokenizer \
        [--config-json '{"batch_tokens": 6000}']          # batches per epoch and padding, without training

The corpus index (corpus.py) says which utterances to train on and where their codes are; the planner
(batching.py) turns their lengths into each epoch's batches. `TrainBatches` is one process's endless stream
of them, from a resumable `Position`: it reads the codes row group by row group, holding only the row
groups that batches still to come need, and builds each sequence with its optional speaker token.

A run may resume at another world size mid-epoch. The batches already trained on are then the first
(world size x batches) of the epoch's global plan, whatever process trained them; the rest of the epoch is
re-balanced for the new world size and dealt out anew, so every utterance of the epoch is still trained on
exactly once. The position records each such change (`Position.earlier`) until the epoch ends, so a
second resume, at any world size, rebuilds the same plan.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional, Sequence

import numpy as np
import pyarrow.parquet as pq
import torch

from stages.common.tables import TableError
from stages.lm.vocab import Vocab, collate
from stages.train.batching import balance, nonpad_share, plan_epoch
from stages.train.corpus import CorpusIndex, Subset, codec_metadata, index_corpus, overhead

log = logging.getLogger("train")


@dataclass
class Batch:
    input_ids: torch.Tensor     # (B, L), right-padded with PAD
    targets: torch.Tensor       # (B, L), IGNORE_INDEX except speech codes and EOS
    utt_ids: list[str]
    lengths: list[int]          # real tokens per row

    @property
    def real_tokens(self) -> int:
        return sum(self.lengths)

    @property
    def padded_tokens(self) -> int:
        return self.input_ids.numel()

    @property
    def nonpad_share(self) -> float:
        return self.real_tokens / self.padded_tokens


@dataclass(frozen=True)
class Position:
    """Where the run is in the data: each of `world_size` processes has done `batches` of its share of epoch `epoch`.

    `earlier` is empty unless the run resumed at another world size in this epoch: then it holds the
    (world_size, batches) of each earlier part of the epoch, oldest first (see `TrainBatches.global_plan`).
    """

    epoch: int = 0
    batches: int = 0
    world_size: int = 1
    earlier: tuple[tuple[int, int], ...] = ()

    def to_dict(self) -> dict:
        return {"epoch": self.epoch, "batches": self.batches, "world_size": self.world_size,
                "earlier": [list(part) for part in self.earlier]}

    @classmethod
    def from_dict(cls, data: dict) -> "Position":
        earlier = tuple((int(w), int(b)) for w, b in data.get("earlier", ()))  # absent in older checkpoints
        return cls(int(data["epoch"]), int(data["batches"]), int(data["world_size"]), earlier)

    def at(self, world_size: int) -> "Position":
        """The same point of the data for `world_size` processes: a change of world size starts a new part."""
        if world_size == self.world_size:
            return self
        earlier = self.earlier + ((self.world_size, self.batches),) if self.batches else self.earlier
        return Position(self.epoch, 0, world_size, earlier)


class CodesReader:
    """Codes of whole row groups, read on demand; kept only while batches still to come need them."""

    def __init__(self, index: CorpusIndex):
        self.index = index
        self.files: dict[int, pq.ParquetFile] = {}
        self.cache: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def codes(self, i: int) -> np.ndarray:
        unit = int(self.index.unit[i])
        if unit not in self.cache:
            shard, rg = self.index.units[unit]
            if shard not in self.files:
                self.files[shard] = pq.ParquetFile(self.index.shards[shard])
            column = self.files[shard].read_row_group(rg, columns=["codes"]).column("codes").combine_chunks()
            self.cache[unit] = (column.offsets.to_numpy(), column.values.to_numpy())
        offsets, values = self.cache[unit]
        row = int(self.index.row[i])
        codes = values[offsets[row]:offsets[row + 1]]
        if len(codes) != self.index.n_codes[i]:
            raise TableError(f"{self.index.shards[self.index.units[unit][0]]}: utterance {self.index.utt_ids[i]} "
                             f"has {len(codes)} codes but n_frames says {self.index.n_codes[i]}")
        return codes

    def release(self, units: Sequence[int]) -> None:
        for unit in units:
            self.cache.pop(unit, None)


def drops_speaker(utt_id: str, epoch: int, seed: int, share: float) -> bool:
    """Whether this utterance trains without its speaker token this epoch: a hash, so every rerun agrees."""
    if share <= 0.0:
        return False
    digest = hashlib.blake2b(f"{seed}:{epoch}:{utt_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64 < share


@dataclass(frozen=True)
class SpeakerTokens:
    """Whether sequences carry the speaker token, and which share of them leave it out in an epoch."""

    enabled: bool
    dropout: float = 0.0
    epoch: int = 0
    seed: int = 0

    def of(self, index: CorpusIndex, i: int) -> Optional[str]:
        if not self.enabled or drops_speaker(index.utt_ids[i], self.epoch, self.seed, self.dropout):
            return None
        return index.speakers[i]


def make_batch(index: CorpusIndex, reader: CodesReader, members: Sequence[int], vocab: Vocab,
               speakers: SpeakerTokens) -> Batch:
    examples = [vocab.example(index.text(i), reader.codes(i).tolist(), speakers.of(index, i)) for i in members]
    tensors = collate(examples, pad_id=vocab.pad)
    return Batch(tensors["input_ids"], tensors["targets"], [index.utt_ids[i] for i in members],
                 [len(ids) for ids, _ in examples])


def read_batches(index: CorpusIndex, plan: Sequence[Sequence[int]], vocab: Vocab,
                 speakers: SpeakerTokens) -> Iterator[Batch]:
    """Tensors of each planned batch, in order; each row group is read once and dropped after its last use."""
    last_use: dict[int, int] = {}
    for k, members in enumerate(plan):
        for i in members:
            last_use[int(index.unit[i])] = k
    release_after: dict[int, list[int]] = {}
    for unit, k in last_use.items():
        release_after.setdefault(k, []).append(unit)
    reader = CodesReader(index)
    for k, members in enumerate(plan):
        yield make_batch(index, reader, members, vocab, speakers)
        reader.release(release_after.get(k, ()))


class TrainBatches:
    """One process's batches, epoch after epoch, from a resumable position."""

    def __init__(self, index: CorpusIndex, vocab: Vocab, speaker_tokens: bool, batch_tokens: int,
                 shuffle_buffer: int, sort_buffer: int, seed: int, rank: int = 0, world_size: int = 1,
                 speaker_dropout: float = 0.0):
        if len(index) == 0:
            raise ValueError("no utterances to train on")
        self.index, self.vocab, self.speaker_tokens = index, vocab, speaker_tokens
        self.speaker_dropout = speaker_dropout
        self.batch_tokens, self.shuffle_buffer, self.sort_buffer = batch_tokens, shuffle_buffer, sort_buffer
        self.seed, self.rank, self.world_size = seed, rank, world_size
        self.lengths = index.seq_lengths(overhead(speaker_tokens))
        self.units = index.unit_members()
        too_long = int((self.lengths > batch_tokens).sum())
        if too_long:
            raise ValueError(f"{too_long} utterance(s) are longer than batch_tokens {batch_tokens}; "
                             "raise batch_tokens or lower max_codes")
        self.epoch, self.earlier = 0, ()
        self._plan: Optional[list[list[int]]] = None

    def set_epoch(self, epoch: int, earlier: tuple[tuple[int, int], ...] = ()) -> None:
        """Reshuffle: the order depends on (seed, epoch) only, so every process and every rerun agree.

        `earlier`: the parts of this epoch already trained at other world sizes (`Position.earlier`).
        """
        self.epoch, self.earlier = epoch, tuple(earlier)
        self._plan = None

    def global_plan(self) -> list[list[int]]:
        """The global batches of the current part of the epoch, dealt round-robin to the processes.

        The whole epoch, planned for this world size; after a resume at another world size, what its earlier
        parts left of it: the epoch as planned for the world size it began with, less each part's first
        (world size x batches) global batches, re-balanced for the next world size.
        """
        if self._plan is None:
            sizes = [w for w, _ in self.earlier] + [self.world_size]
            plan = plan_epoch(self.units, self.lengths, self.epoch, self.seed, self.shuffle_buffer, self.sort_buffer,
                              self.batch_tokens, sizes[0])
            for (world, done), now in zip(self.earlier, sizes[1:]):
                plan, dropped = balance(plan[world * done:], now)
                if dropped and self.rank == 0:
                    log.warning("epoch %d: %d utterance(s) left out of the rest of the epoch, which has fewer "
                                "batches than %d processes and none of two utterances to split",
                                self.epoch, dropped, now)
            self._plan = plan
        return self._plan

    def plan(self) -> list[list[int]]:
        """This process's batches of the current part of the epoch: every world_size-th global batch."""
        return self.global_plan()[self.rank::self.world_size]

    def __len__(self) -> int:
        return len(self.plan())

    def __iter__(self) -> Iterator[Batch]:
        return self.iterate()

    def iterate(self, start: int = 0) -> Iterator[Batch]:
        """The current part's batches from the `start`-th on (the earlier ones are skipped unread)."""
        speakers = SpeakerTokens(self.speaker_tokens, self.speaker_dropout, self.epoch, self.seed)
        return read_batches(self.index, self.plan()[start:], self.vocab, speakers)

    def stream(self, position: Position = Position()) -> Iterator[tuple[Batch, Position]]:
        """Batches without end, each with the position after it: resuming there continues exactly.

        A position of another world size continues the same epoch: its batches done are kept done, and the
        rest of the epoch is shared out among this world size (`global_plan`).
        """
        position = position.at(self.world_size)
        epoch, start, earlier = position.epoch, position.batches, position.earlier
        while True:
            self.set_epoch(epoch, earlier)
            if not earlier and len(self) == 0:
                raise ValueError(f"epoch {epoch} has no batch for process {self.rank} of {self.world_size}: "
                                 "too little data for this many processes")
            for k, batch in enumerate(self.iterate(start), start=start + 1):
                yield batch, Position(epoch, k, self.world_size, earlier)
            epoch, start, earlier = epoch + 1, 0, ()


def main(argv: Optional[list[str]] = None) -> None:
    import json

    from stages.config import from_dict
    from stages.text.tokenizer import TextTokenizer
    from stages.config.pretrain import TrainConfig

    parser = argparse.ArgumentParser(description="Batches per epoch and their padding, without training.")
    parser.add_argument("--codes", type=Path, nargs="+", required=True)
    parser.add_argument("--tokenizer", type=Path, required=True)
    parser.add_argument("--config-json", default="{}", help="TrainConfig keys as JSON")
    parser.add_argument("--world-size", type=int, default=1)
    args = parser.parse_args(argv)
    config = from_dict(TrainConfig, json.loads(args.config_json), "train")
    meta = codec_metadata(args.codes)
    subset = Subset(config.splits, config.speakers, config.languages)
    index = index_corpus(args.codes, TextTokenizer.load(args.tokenizer), subset, config.min_codes,
                         config.max_codes, None, overhead(config.speaker_tokens))
    lengths = index.seq_lengths(overhead(config.speaker_tokens))
    plan = plan_epoch(index.unit_members(), lengths, 0, config.seed, config.shuffle_buffer, config.sort_buffer,
                      config.batch_tokens, args.world_size)
    print(f"codec {meta['codec_id']} at {meta['frame_rate']} codes/s; {len(index)} utterances kept, dropped "
          f"{index.dropped or 'none'}; {int(lengths.sum())} tokens, sequences {int(lengths.min())}.."
          f"{int(lengths.max())} long")
    print(f"epoch 0: {len(plan)} batches ({len(plan) // args.world_size} per process), "
          f"{np.mean([len(b) for b in plan]):.1f} utterances each, non-padding share {nonpad_share(plan, lengths):.3f}")


if __name__ == "__main__":
    main()
