"""Stage `resample` (one job per shard): manifest rows of this shard -> 24 kHz mono FLAC in Parquet.

    python -m stages.resample --manifest results/demo/manifest.parquet --shard 0 --num-shards 2 \
        --config-json '{"sample_rate": 24000}' --out results/demo/audio/shard-00000.parquet \
        --quarantine results/demo/audio/quarantine-00000.parquet

A shard holds the utterances whose stable utt_id hash falls in it, so shards are independent jobs and
adding data never reshuffles old shards. Each clip is decoded, downmixed, resampled, trimmed,
length-filtered and loudness-normalised (`stages.common.audio`); a clip that fails any step becomes a
quarantine row with its reason. Both tables are written atomically.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import pyarrow as pa
from tqdm import tqdm

from stages.common.audio import Unusable, condition, encode_flac, read_audio
from stages.config.audio import AudioConfig
from stages.common.shards import shard_of
from stages.common.tables import AUDIO_SHARD, IDENTITY_COLUMNS, MANIFEST, QUARANTINE, read_table, write_table
from stages.common.cli import config_section, start

log = logging.getLogger("resample")
STAGE = "resample"


def shard_rows(manifest: Path, shard: int, num_shards: int) -> list[dict]:
    table = read_table(manifest, MANIFEST)
    in_shard = pa.array([shard_of(u, num_shards) == shard for u in table.column("utt_id").to_pylist()])
    return table.filter(in_shard).to_pylist()


def resample_rows(rows: list[dict], cfg: AudioConfig, progress: bool = True) -> tuple[list[dict], list[dict]]:
    """Condition every row's audio; returns (audio rows, quarantine rows)."""
    kept, rejected = [], []
    for row in tqdm(rows, desc="resample", disable=not progress, mininterval=5):
        try:
            samples, rate = read_audio(row["source"])
            clip = condition(samples, rate, cfg)
        except Unusable as e:
            rejected.append({"utt_id": row["utt_id"], "source": row["source"], "stage": STAGE, "reason": str(e)})
            continue
        kept.append({
            **{k: row[k] for k in (*IDENTITY_COLUMNS, "source")},
            "num_samples": len(clip.samples), "sample_rate": clip.sample_rate,
            "source_loudness_lufs": clip.source_loudness_lufs,
            "audio": encode_flac(clip.samples, clip.sample_rate),
        })
    return kept, rejected


def resample_shard(manifest: Path, shard: int, num_shards: int, cfg: AudioConfig,
                   out: Path, quarantine: Path) -> tuple[int, int]:
    if not 0 <= shard < num_shards:
        raise ValueError(f"shard {shard} is outside 0..{num_shards - 1}")
    rows = shard_rows(manifest, shard, num_shards)
    log.info("shard %d/%d: %d utterances", shard, num_shards, len(rows))
    kept, rejected = resample_rows(rows, cfg)
    seconds = sum(r["num_samples"] for r in kept) / cfg.sample_rate
    meta = {"sample_rate": str(cfg.sample_rate), "shard": str(shard), "num_shards": str(num_shards)}
    write_table(kept, AUDIO_SHARD, out, metadata=meta)
    write_table(rejected, QUARANTINE, quarantine)
    log.info("kept %d clips (%.1f min), quarantined %d", len(kept), seconds / 60, len(rejected))
    for r in rejected[:20]:
        log.warning("quarantined %s: %s", r["utt_id"], r["reason"])
    return len(kept), len(rejected)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--manifest", type=Path, required=True)
    parser.add_argument("--shard", type=int, required=True)
    parser.add_argument("--num-shards", type=int, required=True)
    parser.add_argument("--config-json", required=True, help="the `audio` config section as JSON")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--quarantine", type=Path, required=True)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    start(threads=args.threads)
    cfg = config_section(AudioConfig, args.config_json, "audio")
    resample_shard(args.manifest, args.shard, args.num_shards, cfg, args.out, args.quarantine)


if __name__ == "__main__":
    main()
