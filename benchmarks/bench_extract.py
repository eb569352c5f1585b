"""Benchmark: length-bucketed batched code extraction vs a per-utterance loop, same shard, same codes.

    .venv/bin/python benchmarks/bench_extract.py --audio results/demo/audio/shard-00000.parquet \
        --codec-config results/demo/codec/codec.yaml --codec-checkpoint results/demo/codec/codec.ckpt [--clips 200]

The per-utterance loop is what the earlier MiniMind-TTS and CosyVoice's extraction tools do: one clip per
forward pass. The batched way is the `extract_codes` stage: clips sorted by length and grouped up to a
padded-seconds budget. Both run in one process, one after the other, on the same clips; the codes must
be identical. Prints audio seconds per wall second (x real time) for each and the ratio.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import torch

sys.path.insert(0, str(Path(__file__).parent))
from machine import describe  # noqa: E402

from stages.common.audio import decode_flac  # noqa: E402
from stages.codec import load_codec  # noqa: E402
from stages.extract_codes import encode_clips  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--audio", type=Path, required=True)
    parser.add_argument("--codec-config", type=Path, required=True)
    parser.add_argument("--codec-checkpoint", type=Path, required=True)
    parser.add_argument("--clips", type=int, default=200)
    parser.add_argument("--batch-seconds", type=float, nargs="+", default=[30.0, 60.0])
    args = parser.parse_args()
    codec = load_codec(args.codec_config, args.codec_checkpoint)
    blobs = pq.read_table(args.audio, columns=["audio"]).column("audio").to_pylist()[:args.clips]
    clips = [decode_flac(b)[0] for b in blobs]
    seconds = sum(len(c) for c in clips) / codec.sample_rate
    encode_clips(codec, clips[:4], 5.0, torch.device("cpu"), progress=False)  # warm-up

    start = time.perf_counter()
    reference = encode_clips(codec, clips, 1e-9, torch.device("cpu"), progress=False)  # budget < any clip: one by one
    loop_time = time.perf_counter() - start
    print(f"machine: {describe()}")
    print(f"codec: hop {codec.hop_length} ({codec.frame_rate:g} codes/s); {len(clips)} clips, {seconds / 60:.1f} min")
    print(f"per-utterance loop:               {loop_time:7.2f} s  {seconds / loop_time:6.1f}x real time")
    for budget in args.batch_seconds:
        start = time.perf_counter()
        batched = encode_clips(codec, clips, budget, torch.device("cpu"), progress=False)
        took = time.perf_counter() - start
        same = all(np.array_equal(a, b) for a, b in zip(batched, reference))
        print(f"bucketed batches of <= {budget:4.0f} s padded: {took:7.2f} s  {seconds / took:6.1f}x real time  "
              f"ratio {loop_time / took:.2f}x  identical codes: {same}")


if __name__ == "__main__":
    main()
