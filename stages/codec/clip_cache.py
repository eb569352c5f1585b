"""train_codec's audio as one int16 file on disk, read crop by crop, so memory does not grow with the corpus.

    store_train, store_valid = cached_clips(shards, Path("results/demo/codec/audio_cache"))
    len(store_train), len(store_train[0]), store_train[0][:24000]      # clips, samples, a float32 slice

Decoding every clip into RAM as float32 costs 4 bytes a sample: LibriTTS's 585 h at 24 kHz would need ~200 GB.
Instead the train and valid clips of the audio shards are decoded once, a row group at a time, into
`clips.int16` beside an index (`clips.json`: offsets, lengths, splits, and what the shards were). Each crop
maps the file, copies its samples and unmaps it again, so the process holds only what a step reads. The shards'
FLAC is 16-bit PCM, so the int16 copy is lossless: a crop equals the float32 decode sample for sample.
A cache whose shards changed is rebuilt; one a killed run left half-written is never used (written
under a temporary name, renamed when complete).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from pathlib import Path
from typing import Sequence

import numpy as np
import pyarrow.parquet as pq
import soundfile as sf

from stages.common.tables import AUDIO_SHARD, read_table

DATA_FILE, INDEX_FILE = "clips.int16", "clips.json"
SCALE = 1.0 / 32768.0  # what soundfile's float32 read of 16-bit PCM multiplies by
ROWS_PER_READ = 64


class CachedClip:
    """One clip of a ClipStore: `len()`, float32 slices, and `np.asarray` for the whole clip."""

    def __init__(self, store: "ClipStore", index: int):
        self.store, self.index = store, index

    def __len__(self) -> int:
        return int(self.store.lengths[self.index])

    def __getitem__(self, key: slice) -> np.ndarray:
        start, stop, step = key.indices(len(self))
        if step != 1:
            raise ValueError("a cached clip is read in contiguous slices")
        return self.store.read(self.index, start, stop)

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        samples = self[:]
        return samples if dtype is None else samples.astype(dtype, copy=False)


class ClipStore(Sequence):
    """The clips of one split in the cache file: offsets and lengths in memory, samples on disk."""

    def __init__(self, data_path: Path, offsets: np.ndarray, lengths: np.ndarray):
        self.data_path, self.offsets, self.lengths = Path(data_path), offsets, lengths

    def __len__(self) -> int:
        return len(self.lengths)

    def __getitem__(self, key):
        if isinstance(key, slice):
            return [CachedClip(self, i) for i in range(*key.indices(len(self)))]
        if not -len(self) <= key < len(self):
            raise IndexError(key)
        return CachedClip(self, key % len(self))

    def read(self, index: int, start: int, stop: int) -> np.ndarray:
        if stop <= start:
            return np.zeros(0, np.float32)
        begin = int(self.offsets[index]) + start
        # a map per read, dropped at once: its pages never pile up in this process's resident memory
        mapped = np.memmap(self.data_path, dtype=np.int16, mode="r", offset=2 * begin, shape=(stop - start,))
        samples = mapped.astype(np.float32) * SCALE
        del mapped
        return samples


def shards_digest(shards: Sequence[Path]) -> str:
    """What the cache was built from: each shard's name, size and modification time."""
    digest = hashlib.sha256()
    for path in shards:
        stat = Path(path).stat()
        digest.update(f"{Path(path).resolve()}|{stat.st_size}|{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def _decode_int16(flac: bytes, where: str) -> np.ndarray:
    samples, _ = sf.read(io.BytesIO(flac), dtype="int16", always_2d=True)
    if samples.shape[1] != 1:
        raise ValueError(f"{where}: {samples.shape[1]} channels; audio shards hold mono clips")
    return samples[:, 0]


def _build(shards: Sequence[Path], folder: Path, digest: str) -> dict:
    folder.mkdir(parents=True, exist_ok=True)
    partial = folder / f".{DATA_FILE}.tmp-{os.getpid()}"
    index = {"shards": digest, "splits": [], "offsets": [], "lengths": []}
    offset = 0
    with open(partial, "wb") as out:
        for path in shards:
            read_table(Path(path), AUDIO_SHARD, columns=["split"])  # a clear error for a table of another kind
            for batch in pq.ParquetFile(path).iter_batches(batch_size=ROWS_PER_READ, columns=["utt_id", "split", "audio"]):
                for utt_id, split, audio in zip(*(batch.column(c).to_pylist() for c in ("utt_id", "split", "audio"))):
                    if split not in ("train", "valid"):
                        continue  # held-out clips stay unseen by the codec
                    samples = _decode_int16(audio, f"{path}: {utt_id}")
                    out.write(samples.tobytes())
                    index["splits"].append(split)
                    index["offsets"].append(offset)
                    index["lengths"].append(len(samples))
                    offset += len(samples)
    os.replace(partial, folder / DATA_FILE)
    (folder / INDEX_FILE).write_text(json.dumps(index) + "\n")
    return index


def cached_clips(shards: Sequence[Path], folder: Path) -> tuple[ClipStore, ClipStore]:
    """Train and valid clips of the audio shards, from the cache in `folder` (built or rebuilt as needed)."""
    folder = Path(folder)
    digest = shards_digest(shards)
    index_path, data_path = folder / INDEX_FILE, folder / DATA_FILE
    index = json.loads(index_path.read_text()) if index_path.exists() and data_path.exists() else None
    if index is None or index["shards"] != digest or data_path.stat().st_size != 2 * sum(index["lengths"]):
        index = _build(shards, folder, digest)
    splits = np.array(index["splits"])
    offsets, lengths = np.array(index["offsets"], np.int64), np.array(index["lengths"], np.int64)
    return tuple(ClipStore(data_path, offsets[splits == s], lengths[splits == s]) for s in ("train", "valid"))
