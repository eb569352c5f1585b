"""Benchmark: sharded resampling on all cores vs a plain per-file loop over the same manifest.

    .venv/bin/python benchmarks/bench_resample.py [--utterances 400] [--workdir /tmp/bench_resample]

Builds (once, cached in --workdir) the demo corpus and its manifest, then conditions the same clips
two ways in one run: (a) a per-file loop in one process, the way a plain preprocessing script does it;
(b) the `resample` stage's shard function, one process per shard with one thread each, as Snakemake
runs the shard jobs. Prints audio seconds per wall second (x real time) for each and the ratio.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).parent))
from machine import describe  # noqa: E402

from stages.common.audio import condition, encode_flac, read_audio  # noqa: E402
from stages.demo_corpus import make_demo_corpus  # noqa: E402
from stages.config.audio import AudioConfig  # noqa: E402
from stages.config.corpus import CorpusConfig, DemoCorpusConfig  # noqa: E402
from stages.prepare import prepare  # noqa: E402
from stages.resample import resample_shard  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def build_manifest(workdir: Path, utterances: int) -> Path:
    manifest = workdir / "manifest.parquet"
    if manifest.exists():
        return manifest
    per_voice = max(1, utterances // 6)
    demo = DemoCorpusConfig(english_train_sentences=per_voice, english_eval_sentences=0,
                            mandarin_train_sentences=per_voice, mandarin_eval_sentences=0)
    make_demo_corpus(REPO / "data/demo/kjv_verses.tsv", REPO / "data/demo/tang_couplets.tsv", demo,
                     workdir / "demo_corpus", threads=os.cpu_count() or 1)
    prepare(workdir / "demo_corpus" / "transcripts.csv", CorpusConfig(), manifest, workdir / "quarantine.parquet")
    return manifest


def per_file_loop(manifest: Path, cfg: AudioConfig) -> int:
    clips = 0
    for row in pq.read_table(manifest).to_pylist():
        samples, rate = read_audio(row["source"])
        encode_flac(condition(samples, rate, cfg).samples, cfg.sample_rate)
        clips += 1
    return clips


def _one_shard(args: tuple) -> int:
    import torch

    torch.set_num_threads(1)
    manifest, shard, num_shards, out = args
    kept, _ = resample_shard(manifest, shard, num_shards, AudioConfig(), out / f"shard-{shard}.parquet",
                             out / f"quarantine-{shard}.parquet")
    return kept


def sharded(manifest: Path, out: Path, workers: int) -> int:
    num_shards = workers * 4  # a few shards per core evens out unequal shard sizes, as on a cluster
    with ProcessPoolExecutor(workers) as pool:
        return sum(pool.map(_one_shard, [(manifest, s, num_shards, out) for s in range(num_shards)]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--utterances", type=int, default=400)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/bench_resample"))
    args = parser.parse_args()
    import logging
    logging.disable(logging.INFO)
    os.environ["TQDM_DISABLE"] = "1"
    manifest = build_manifest(args.workdir, args.utterances)
    seconds = sum(pq.read_table(manifest, columns=["duration"]).column("duration").to_pylist())
    cfg = AudioConfig()
    workers = os.cpu_count() or 1

    start = time.perf_counter()
    loop_clips = per_file_loop(manifest, cfg)
    loop_time = time.perf_counter() - start

    start = time.perf_counter()
    shard_clips = sharded(manifest, args.workdir / "shards", workers)
    shard_time = time.perf_counter() - start

    print(f"machine: {describe()}")
    print(f"corpus: {loop_clips} clips, {seconds / 60:.1f} min of source audio")
    print(f"per-file loop (1 process, default threads): {loop_time:6.2f} s  {seconds / loop_time:7.0f}x real time")
    print(f"sharded ({workers} processes x 1 thread):      {shard_time:6.2f} s  {seconds / shard_time:7.0f}x real time"
          f"  ({shard_clips} clips kept)")
    print(f"speed-up of sharded over the loop: {loop_time / shard_time:.2f}x on {workers} cores")


if __name__ == "__main__":
    main()
