"""The LM's corpus index: codes Parquet -> the kept utterances, their tokenised text and their lengths.

    # what the index keeps and drops, and epoch 0's batches (the command line of stages/train/data.py):
    python -m stages.train.data --codes results/demo/codes/shard-*.parquet --tokenizer results/demo/tokenizer

`index_corpus` reads every shard's small columns once, row group by row group (never the codes), tokenises
each distinct text once and filters by subset and length. The index records where each utterance's codes
are (shard, row group, row), so the batch planner (batching.py) can work from lengths alone and the reader
(data.py) fetch codes only for the batches still to come. `codec_metadata` checks that all shards come
from one codec.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Protocol, Sequence

import numpy as np
import pyarrow.parquet as pq

from stages.common.tables import CODES, IDENTITY_COLUMNS, SPLITS, TableError, file_metadata

CODEC_KEYS = ("codec_id", "frame_rate", "sample_rate", "hop_length", "codebook_size")
INDEX_COLUMNS = [*IDENTITY_COLUMNS, "n_frames"]


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


def overhead(speaker_tokens: bool) -> int:
    """Tokens of a sequence besides text and codes: SOS, TASK and the optional speaker token."""
    return 2 + int(speaker_tokens)
