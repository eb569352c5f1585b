"""Synthetic codes shards and a tiny tokenizer for the training tests (tests/test_train_data.py, test_train_loop.py).

    from train_corpus import utterances, write_shards, fit_tiny_tokenizer

Codes are a deterministic function of the text and the speaker (each character becomes a speaker-shifted
code held for a few frames), so a model can learn them and a falling loss means something.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Sequence

import pyarrow as pa
import pyarrow.parquet as pq

from stages.fit_tokenizer import fit_tokenizer
from stages.common.tables import CODES, MANIFEST, write_table
from stages.config.tokenizer import TokenizerConfig

SENTENCES = [
    "to know wisdom and instruction",
    "a wise man will hear and will increase learning",
    "my son hear the instruction of thy father",
    "trust in the lord with all thine heart",
    "happy is the man that findeth wisdom",
    "a soft answer turneth away wrath",
    "pride goeth before destruction",
    "the fear of the lord is the beginning of knowledge",
    "go to the ant thou sluggard consider her ways",
    "a merry heart doeth good like a medicine",
    "iron sharpeneth iron",
    "the path of the just is as the shining light",
]
SPEAKERS = ("awb", "rms", "slt")
CODEBOOK = 512
METADATA = {"codec_id": "test-codec-0001", "frame_rate": "75.0", "sample_rate": "24000", "hop_length": "320",
            "codebook_size": str(CODEBOOK)}


def speech(text: str, speaker: str, frames_per_char: int) -> list[int]:
    shift = 37 * SPEAKERS.index(speaker) if speaker in SPEAKERS else 0
    return [(ord(c) * 7 + shift) % CODEBOOK for c in text for _ in range(frames_per_char)]


def utterances(n: int, seed: int = 0, speakers: Sequence[str] = SPEAKERS, frames: tuple[int, int] = (1, 3),
               valid_every: int = 10, eval_every: int = 7) -> list[dict]:
    """`n` rows of the CODES schema; every valid_every-th is 'valid', every eval_every-th 'eval', the rest 'train'."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        text = rng.choice(SENTENCES)
        speaker = speakers[i % len(speakers)]
        codes = speech(text, speaker, rng.randint(*frames))
        split = ("eval" if i % eval_every == eval_every - 1 else
                 "valid" if i % valid_every == valid_every - 1 else "train")
        rows.append({"utt_id": f"{speaker}-{i:05d}", "speaker": speaker, "language": "en", "text": text,
                     "split": split, "codes": codes, "n_frames": len(codes)})
    return rows


def write_shards(directory: Path, rows: list[dict], n_shards: int = 2, row_group_size: int = 8,
                 metadata: dict | None = None) -> list[Path]:
    """Rows dealt round-robin into `n_shards` codes shards with small row groups (to exercise streaming)."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for s in range(n_shards):
        table = pa.Table.from_pylist(rows[s::n_shards], schema=CODES)
        table = table.replace_schema_metadata(metadata or METADATA)
        path = directory / f"shard-{s:05d}.parquet"
        pq.write_table(table, path, row_group_size=row_group_size)
        paths.append(path)
    return paths


def fit_tiny_tokenizer(directory: Path) -> Path:
    """A character-level sentencepiece model of SENTENCES (fits in well under a second)."""
    rows = [{"utt_id": f"t{i}", "speaker": "awb", "language": "en", "text": text, "split": "train",
             "source": f"{i}.wav", "duration": 1.0, "source_sample_rate": 16000, "channels": 1}
            for i, text in enumerate(SENTENCES)]
    manifest = directory / "manifest.parquet"
    write_table(rows, MANIFEST, manifest)
    out = directory / "tokenizer"
    fit_tokenizer(manifest, out, TokenizerConfig(vocab_size=40, model_type="char", character_coverage=1.0))
    return out
