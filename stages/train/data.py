"""Training data of the LM: codes Parquet -> a tokenised, filtered index -> per-epoch dynamic batches.

    python -m stages.train.data --codes results/demo/codes/shard-*.parquet --tokenizer results/demo/tokenizer \
        [--config-json '{"batch_tokens": 6000}']          # batches per epoch and padding, without training

`index_corpus` reads every shard's small columns once, row group by row group (never the codes), tokenises
each distinct text once and filters by subset and length. Every epoch, `plan_epoch` turns the index into
batches CosyVoice's way, from lengths alone: row groups in a seeded order, a shuffle buffer, a sort buffer,
then dynamic batches that fill a padded-token budget. Because the plan needs no codes, a resumed run skips
the batches it already trained on without reading them, and sees exactly the batches an uninterrupted run
would. The global batch list is split round-robin across processes (after splitting a few batches so
that every process gets the same number of steps); `TrainBatches` then reads each process's codes row group
by row group, holding only the row groups that batches still to come need.
"""

from __future__ import annotations

import argparse
import hashlib
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Optional, Protocol, Sequence

import numpy as np
import pyarrow.parquet as pq
import torch

from stages.lm.vocab import Vocab, collate
from stages.tables import CODES, SPLITS, TableError, file_metadata

CODEC_KEYS = ("codec_id", "frame_rate", "sample_rate", "hop_length", "codebook_size")
INDEX_COLUMNS = ["utt_id", "speaker", "language", "text", "split", "n_frames"]


class Tokenizer(Protocol):
    def encode(self, text: str, language: str) -> list[int]: ...


def codec_metadata(shards: Sequence[Path]) -> dict[str, str]:
    """The codec metadata all shards share; an error naming the shards when one lacks it or differs."""
    if not shards:
        raise ValueError("no codes shards given")
    first, reference = None, None
    for shard in map(Path, shards):
        if not shard.exists():
            raise FileNotFoundError(f"{shard}: codes shard not found")
        meta = file_metadata(shard)
        missing = [k for k in CODEC_KEYS if k not in meta]
        if missing:
            raise TableError(f"{shard}: codes shard lacks codec metadata {missing}; was it written by extract_codes?")
        meta = {k: meta[k] for k in CODEC_KEYS}
        if reference is None:
            first, reference = shard, meta
        elif meta != reference:
            diff = [f"{k} {reference[k]!r} vs {meta[k]!r}" for k in CODEC_KEYS if meta[k] != reference[k]]
            raise ValueError(f"codes shards disagree: {first} and {shard} differ in {'; '.join(diff)}; "
                             "all shards must come from one codec")
    return reference


@dataclass(frozen=True)
class Subset:
    """Which utterances to train on; empty speakers/languages mean all. 'eval' can never be selected."""

    splits: tuple[str, ...] = ("train",)
    speakers: tuple[str, ...] = ()
    languages: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        unknown = [s for s in self.splits if s not in SPLITS]
        if unknown:
            raise ValueError(f"unknown split(s) {unknown}; splits are {SPLITS}")
        if "eval" in self.splits:
            raise ValueError("the 'eval' split is held out for evaluation and is never trained or validated on")

    def keeps(self, split: str, speaker: str, language: str) -> bool:
        return (split in self.splits and (not self.speakers or speaker in self.speakers)
                and (not self.languages or language in self.languages))


@dataclass
class CorpusIndex:
    """The kept utterances of some shards: where their codes are, their tokenised text and their lengths."""

    shards: tuple[Path, ...]
    units: list[tuple[int, int]]          # (shard, row group) of every row group holding a kept utterance
    utt_ids: list[str]
    speakers: list[str]
    languages: list[str]
    unit: np.ndarray                      # (N,) which unit holds utterance i
    row: np.ndarray                       # (N,) its row inside that row group
    n_codes: np.ndarray                   # (N,) speech codes (the n_frames column)
    text_offsets: np.ndarray              # (N + 1,) text ids of i are text_values[offsets[i]:offsets[i+1]]
    text_values: np.ndarray
    dropped: dict[str, int] = field(default_factory=dict)   # reason -> utterances filtered out
    all_speakers: set[str] = field(default_factory=set)     # every speaker in the shards, kept or not (for errors)

    def __len__(self) -> int:
        return len(self.utt_ids)

    @property
    def n_text(self) -> np.ndarray:
        return np.diff(self.text_offsets)

    def text(self, i: int) -> list[int]:
        return self.text_values[self.text_offsets[i]:self.text_offsets[i + 1]].tolist()

    def seq_lengths(self, overhead: int) -> np.ndarray:
        """Tokens per training sequence: text + codes + `overhead` (SOS, TASK and an optional speaker token)."""
        return self.n_text + self.n_codes + overhead

    def unit_members(self) -> list[np.ndarray]:
        """Utterance indices of each unit, in file order."""
        order = np.lexsort((self.row, self.unit))
        bounds = np.searchsorted(self.unit[order], np.arange(len(self.units) + 1))
        return [order[bounds[u]:bounds[u + 1]] for u in range(len(self.units))]


def index_corpus(shards: Sequence[Path], tokenizer: Tokenizer, subset: Subset, min_codes: int = 1,
                 max_codes: Optional[int] = None, max_seq_len: Optional[int] = None, overhead: int = 2) -> CorpusIndex:
    """Read the small columns of every shard (row group by row group), tokenise each distinct text once, filter.

    Utterances are dropped (and counted in `dropped`) when outside [min_codes, max_codes], when their
    text has no tokens, or when text + codes + `overhead` exceeds `max_seq_len` (the model's context, or
    the batch budget when that is smaller).
    """
    shards = tuple(map(Path, shards))
    units: list[tuple[int, int]] = []
    utt_ids, speakers, languages, unit_of, rows, n_codes, texts = [], [], [], [], [], [], []
    token_cache: dict[tuple[str, str], np.ndarray] = {}
    all_speakers: set[str] = set()
    dropped = {"too_few_codes": 0, "too_many_codes": 0, "empty_text": 0, "sequence_too_long": 0}
    for s, shard in enumerate(shards):
        file = pq.ParquetFile(shard)
        missing = [name for name in CODES.names if name not in file.schema_arrow.names]
        if missing:
            raise TableError(f"{shard}: missing column(s) {missing}; is it a codes shard of this pipeline version?")
        for rg in range(file.num_row_groups):
            group = file.read_row_group(rg, columns=INDEX_COLUMNS).to_pydict()
            unit = None
            all_speakers.update(group["speaker"])
            for r, (utt, spk, lang, text, split, frames) in enumerate(zip(*(group[c] for c in INDEX_COLUMNS))):
                if not subset.keeps(split, spk, lang):
                    continue
                if frames < min_codes:
                    dropped["too_few_codes"] += 1
                    continue
                if max_codes is not None and frames > max_codes:
                    dropped["too_many_codes"] += 1
                    continue
                key = (text, lang)
                if key not in token_cache:
                    token_cache[key] = np.asarray(tokenizer.encode(text, lang), dtype=np.int32)
                ids = token_cache[key]
                if len(ids) == 0:
                    dropped["empty_text"] += 1
                    continue
                if max_seq_len is not None and len(ids) + frames + overhead > max_seq_len:
                    dropped["sequence_too_long"] += 1
                    continue
                if unit is None:
                    unit = len(units)
                    units.append((s, rg))
                utt_ids.append(utt)
                speakers.append(spk)
                languages.append(lang)
                unit_of.append(unit)
                rows.append(r)
                n_codes.append(frames)
                texts.append(ids)
    lengths = np.array([len(t) for t in texts], dtype=np.int64)
    return CorpusIndex(
        shards=shards, units=units, utt_ids=utt_ids, speakers=speakers, languages=languages,
        unit=np.asarray(unit_of, dtype=np.int64), row=np.asarray(rows, dtype=np.int64),
        n_codes=np.asarray(n_codes, dtype=np.int64),
        text_offsets=np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
        text_values=np.concatenate(texts).astype(np.int32) if texts else np.zeros(0, dtype=np.int32),
        dropped={k: v for k, v in dropped.items() if v}, all_speakers=all_speakers)


# --- batching: plain functions of lengths, so the plan is cheap, testable and the same on every process ---

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


# --- from batch plans to tensors ------------------------------------------------------------------------

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
    """Where a process is in the data: `batches` of this process's share of epoch `epoch` are done."""

    epoch: int = 0
    batches: int = 0
    world_size: int = 1

    def to_dict(self) -> dict:
        return {"epoch": self.epoch, "batches": self.batches, "world_size": self.world_size}

    @classmethod
    def from_dict(cls, data: dict) -> "Position":
        return cls(int(data["epoch"]), int(data["batches"]), int(data["world_size"]))


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
        self.epoch = 0
        self._plan: Optional[list[list[int]]] = None

    def set_epoch(self, epoch: int) -> None:
        """Reshuffle: the order depends on (seed, epoch) only, so every process and every rerun agree."""
        self.epoch = epoch
        self._plan = None

    def global_plan(self) -> list[list[int]]:
        if self._plan is None:
            self._plan = plan_epoch(self.units, self.lengths, self.epoch, self.seed, self.shuffle_buffer,
                                    self.sort_buffer, self.batch_tokens, self.world_size)
        return self._plan

    def plan(self) -> list[list[int]]:
        """This process's batches of the current epoch: every world_size-th global batch."""
        return self.global_plan()[self.rank::self.world_size]

    def __len__(self) -> int:
        return len(self.plan())

    def __iter__(self) -> Iterator[Batch]:
        return self.iterate()

    def iterate(self, start: int = 0) -> Iterator[Batch]:
        """The current epoch's batches from the `start`-th on (the earlier ones are skipped unread)."""
        speakers = SpeakerTokens(self.speaker_tokens, self.speaker_dropout, self.epoch, self.seed)
        return read_batches(self.index, self.plan()[start:], self.vocab, speakers)

    def stream(self, position: Position = Position()) -> Iterator[tuple[Batch, Position]]:
        """Batches without end, each with the position after it: resuming there continues exactly."""
        epoch, start = position.epoch, position.batches
        if position.world_size != self.world_size and (position.epoch, position.batches) != (0, 0):
            # the plan of another world size splits batches differently: keep the share of the epoch done
            start = math.ceil(position.batches * position.world_size / self.world_size)
        while True:
            self.set_epoch(epoch)
            if len(self) == 0:
                raise ValueError(f"epoch {epoch} has no batch for process {self.rank} of {self.world_size}: "
                                 "too little data for this many processes")
            for k, batch in enumerate(self.iterate(start), start=start + 1):
                yield batch, Position(epoch, k, self.world_size)
            epoch, start = epoch + 1, 0


def overhead(speaker_tokens: bool) -> int:
    """Tokens of a sequence besides text and codes: SOS, TASK and the optional speaker token."""
    return 2 + int(speaker_tokens)


def validation_batches(index: CorpusIndex, vocab: Vocab, speaker_tokens: bool, batch_tokens: int, rank: int = 0,
                       world_size: int = 1) -> list[list[int]]:
    """This process's share of the fixed, length-sorted validation batches (a plan; read with read_batches)."""
    if len(index) == 0:
        return []
    lengths = index.seq_lengths(overhead(speaker_tokens))
    return plan_sorted(np.arange(len(index)), lengths, batch_tokens, world_size)[rank::world_size]


def main(argv: Optional[list[str]] = None) -> None:
    import json

    from stages.config import from_dict
    from stages.text.tokenizer import TextTokenizer
    from stages.train.config import TrainConfig

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
