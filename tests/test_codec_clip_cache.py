"""train_codec reads its crops from an int16 cache on disk: the same samples as decoding into RAM, flat memory."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import torch

from conftest import REPO
from stages.codec.clip_cache import cached_clips
from stages.codec.trainer import random_crops
from stages.common.audio import decode_flac, encode_flac
from stages.common.tables import AUDIO_SHARD, read_table, write_table

RATE = 24000


def shard(path, seconds: list[float], splits: list[str], seed: int = 0):
    rng = np.random.default_rng(seed)
    rows = []
    for i, (length, split) in enumerate(zip(seconds, splits)):
        t = np.arange(int(length * RATE)) / RATE
        wav = (0.3 * np.sin(2 * np.pi * rng.uniform(100, 400) * t) + 0.01 * rng.standard_normal(len(t)))
        rows.append({"utt_id": f"s{seed}-{i}", "speaker": "a", "language": "en", "text": "x", "split": split,
                     "source": "x.wav", "num_samples": len(t), "sample_rate": RATE, "source_loudness_lufs": -23.0,
                     "audio": encode_flac(wav.astype(np.float32), RATE)})
    write_table(rows, AUDIO_SHARD, path)
    return path


def test_the_cache_holds_exactly_the_decoded_train_and_valid_clips(tmp_path):
    paths = [shard(tmp_path / "a.parquet", [1.0, 0.5, 2.0, 0.7], ["train", "eval", "valid", "train"], seed=1),
             shard(tmp_path / "b.parquet", [1.2], ["train"], seed=2)]
    train, valid = cached_clips(paths, tmp_path / "cache")
    decoded = {s: [] for s in ("train", "valid")}
    for path in paths:
        for row in read_table(path, AUDIO_SHARD).to_pylist():
            if row["split"] in decoded:
                decoded[row["split"]].append(decode_flac(row["audio"])[0])
    assert [len(c) for c in train] == [len(c) for c in decoded["train"]] and len(valid) == 1
    for clip, expected in zip([*train, *valid], decoded["train"] + decoded["valid"]):
        np.testing.assert_array_equal(np.asarray(clip), expected)  # 16-bit FLAC: the int16 copy is lossless
        np.testing.assert_array_equal(clip[100:900], expected[100:900])
    # the crops a training step draws are the same as from the clips in RAM, for the same generator
    from_cache = random_crops(train, 4, 12000, torch.Generator().manual_seed(3))
    from_ram = random_crops(decoded["train"], 4, 12000, torch.Generator().manual_seed(3))
    assert torch.equal(from_cache, from_ram)


def test_the_cache_is_reused_and_rebuilt_when_a_shard_changes(tmp_path):
    path = shard(tmp_path / "a.parquet", [1.0, 1.0], ["train", "train"])
    cached_clips([path], tmp_path / "cache")
    built = (tmp_path / "cache" / "clips.int16").stat().st_mtime_ns
    cached_clips([path], tmp_path / "cache")
    assert (tmp_path / "cache" / "clips.int16").stat().st_mtime_ns == built
    shard(path, [1.0, 1.0, 0.5], ["train"] * 3, seed=5)
    train, _ = cached_clips([path], tmp_path / "cache")
    assert len(train) == 3 and len(json.loads((tmp_path / "cache" / "clips.json").read_text())["lengths"]) == 3


PEAK_RSS = """
import resource, sys
from stages.train_codec import main
main(sys.argv[1:])
print("peak_rss_kb", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def peak_rss_kb(shards, out) -> int:
    config = {"preset": "tiny", "steps": 2, "vq_warmup_steps": 1, "batch_size": 2, "kmeans_frames": 64,
              "valid_clips": 1, "checkpoint_every": 2}
    done = subprocess.run([sys.executable, "-c", PEAK_RSS, *map(str, shards), "--out-checkpoint", str(out / "c.ckpt"),
                           "--out-config", str(out / "c.yaml"), "--out-metrics", str(out / "m.json"),
                           "--config-json", json.dumps(config), "--threads", "1", "--device", "cpu"],
                          cwd=REPO, capture_output=True, text=True, check=True)
    return int(done.stdout.split("peak_rss_kb")[-1])


def test_peak_memory_does_not_grow_with_the_corpus(tmp_path):
    # 8 minutes of audio a shard, 46 MB as float32: decoded into RAM, 7 more shards would add ~320 MB to the
    # ~1.1 GB a tiny codec's training holds (measured: the old in-RAM reading grew by 163 MB for 4-minute shards)
    one = shard(tmp_path / "shard-0.parquet", [20.0] * 24, ["train"] * 23 + ["valid"])
    eight = [one] + [shutil.copy(one, tmp_path / f"shard-{i}.parquet") for i in range(1, 8)]
    small, large = peak_rss_kb([one], tmp_path / "one"), peak_rss_kb(eight, tmp_path / "eight")
    assert large <= 1.2 * small, f"peak RSS {large / 1024:.0f} MiB with 8 shards vs {small / 1024:.0f} MiB with 1"
