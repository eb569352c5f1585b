"""Stage `extract_codes` (one job per shard): 24 kHz audio shard -> WavTokenizer codes in Parquet.

    python -m stages.extract_codes --audio results/demo/audio/shard-00000.parquet \
        --codec-config results/demo/codec/codec.yaml --codec-checkpoint results/demo/codec/codec.ckpt \
        --out results/demo/codes/shard-00000.parquet [--batch-seconds 60] [--threads 2] [--device auto]

Clips are sorted by length and grouped into batches of at most `batch_seconds` of padded audio, so
little time goes into padding; the codec guarantees that padding never changes a code. The output
table (schema `stages.common.tables.CODES`) carries the codec id (hash of its config and weights), frame rate
and sample rate in its file metadata, so a training run can refuse codes made by another codec.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Iterator

import numpy as np
import pyarrow as pa
import torch
from tqdm import tqdm

from stages.common.audio import decode_flac
from stages.codec import codec_id, load_codec
from stages.codec.model import WavTokenizer
from stages.common.tables import AUDIO_SHARD, CODES, IDENTITY_COLUMNS, read_table, write_table
from stages.common.devices import job_device
from stages.common.cli import start

log = logging.getLogger("extract_codes")


def length_buckets(lengths: list[int], max_padded_samples: int) -> Iterator[list[int]]:
    """Indices grouped so that (longest clip in the group) x (group size) stays within the budget."""
    order = sorted(range(len(lengths)), key=lambda i: (lengths[i], i))
    batch: list[int] = []
    for i in order:
        # Sorted ascending, so the newcomer is the longest of the batch it would join.
        if batch and lengths[i] * (len(batch) + 1) > max_padded_samples:
            yield batch
            batch = []
        batch.append(i)
    if batch:
        yield batch


@torch.inference_mode()
def encode_clips(codec: WavTokenizer, clips: list[np.ndarray], batch_seconds: float,
                 device: torch.device, progress: bool = True) -> list[np.ndarray]:
    """Codes (uint16) of every clip, computed in length-bucketed batches; order as given."""
    lengths = [len(c) for c in clips]
    budget = max(int(batch_seconds * codec.sample_rate), max(lengths, default=1))
    codes: list[np.ndarray | None] = [None] * len(clips)
    batches = list(length_buckets(lengths, budget))
    for batch in tqdm(batches, desc="encode", disable=not progress, mininterval=5):
        longest = max(lengths[i] for i in batch)
        wavs = torch.zeros(len(batch), longest)
        for row, i in enumerate(batch):
            wavs[row, :lengths[i]] = torch.from_numpy(clips[i])
        batch_codes, code_lengths = codec.encode(wavs.to(device), torch.tensor([lengths[i] for i in batch],
                                                                                 device=device))
        for row, i in enumerate(batch):
            codes[i] = batch_codes[row, :int(code_lengths[row])].cpu().numpy().astype(np.uint16)
    return codes  # type: ignore[return-value]


def extract_codes(audio: Path, codec_config: Path, codec_checkpoint: Path, out: Path,
                  batch_seconds: float = 60.0, device: str = "auto") -> int:
    """Encode every clip of an audio shard; returns the number of utterances written."""
    target = torch.device(job_device(device))
    codec = load_codec(codec_config, codec_checkpoint, device=target)
    if codec.arch.codebook_size > np.iinfo(np.uint16).max + 1:
        raise ValueError(f"codebook of {codec.arch.codebook_size} codes does not fit the uint16 codes column")
    table = read_table(audio, AUDIO_SHARD)
    rates = set(table.column("sample_rate").to_pylist())
    if rates - {codec.sample_rate}:
        raise ValueError(f"{audio}: audio at {sorted(rates)} Hz but the codec expects {codec.sample_rate} Hz; "
                         "set audio.sample_rate to the codec's rate")
    clips = [decode_flac(blob)[0] for blob in table.column("audio").to_pylist()]
    log.info("%s: %d clips, %.1f min, codec %s on %s", audio.name, len(clips),
             sum(map(len, clips)) / codec.sample_rate / 60, codec_id(codec), target)
    codes = encode_clips(codec, clips, batch_seconds, target)
    columns = {name: table.column(name) for name in IDENTITY_COLUMNS}
    rows = pa.table({**columns,
                     "codes": pa.array([c.tolist() for c in codes], type=pa.list_(pa.uint16())),
                     "n_frames": pa.array([len(c) for c in codes], type=pa.int32())})
    write_table(rows, CODES, out, metadata={
        "codec_id": codec_id(codec), "frame_rate": repr(codec.frame_rate),
        "sample_rate": str(codec.sample_rate), "hop_length": str(codec.hop_length),
        "codebook_size": str(codec.arch.codebook_size)})
    log.info("wrote %d utterances, %d codes", rows.num_rows, sum(len(c) for c in codes))
    return rows.num_rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--audio", type=Path, required=True)
    parser.add_argument("--codec-config", type=Path, required=True)
    parser.add_argument("--codec-checkpoint", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--batch-seconds", type=float, default=60.0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="auto", help="auto (a GPU when usable; required when the job was given GPUs), cpu, cuda, cuda:1, ...")
    args = parser.parse_args(argv)
    start(threads=args.threads)
    extract_codes(args.audio, args.codec_config, args.codec_checkpoint, args.out, args.batch_seconds, args.device)


if __name__ == "__main__":
    main()
