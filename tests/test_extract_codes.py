"""extract_codes: length-bucketed batches give the codes of one-by-one encoding; atomic, metadata-stamped shards."""

from __future__ import annotations

import signal
import subprocess
import sys

import numpy as np
import pyarrow.parquet as pq
import pytest

from conftest import ARCTIC, FIXTURES
from stages.common.audio import condition, encode_flac, read_audio
from stages.codec import codec_id, load_codec
from stages.extract_codes import encode_clips, extract_codes, length_buckets
from stages.config.audio import AudioConfig
from stages.common.tables import AUDIO_SHARD, CODES, file_metadata, write_table

CODEC_YAML = FIXTURES / "wavtokenizer" / "wavtokenizer_fixture_frame40_tiny.yaml"
CODEC_CKPT = FIXTURES / "wavtokenizer" / "wavtokenizer_fixture_frame40_tiny.ckpt"


@pytest.fixture(scope="module")
def clips():
    """Real speech cut to several lengths (some not a multiple of the hop)."""
    out = []
    for name in ("arctic_a0007.wav", "arctic_a0009.wav"):
        speech = condition(*read_audio(str(ARCTIC / name)), AudioConfig()).samples
        out += [speech[:n] for n in (7_213, 24_000, 31_999, len(speech))]
    return out


@pytest.fixture(scope="module")
def audio_shard(tmp_path_factory, clips):
    path = tmp_path_factory.mktemp("shard") / "shard-00000.parquet"
    rows = [{"utt_id": f"u{i}", "speaker": "awb", "language": "en", "text": "words", "split": "train",
             "source": "x.wav", "num_samples": len(c), "sample_rate": 24000, "source_loudness_lufs": -20.0,
             "audio": encode_flac(c, 24000)} for i, c in enumerate(clips)]
    write_table(rows, AUDIO_SHARD, path)
    return path


def test_buckets_respect_the_padded_budget_and_cover_every_clip():
    lengths = [5, 100, 7, 60, 60, 3, 99]
    batches = list(length_buckets(lengths, 200))
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    assert all(max(lengths[i] for i in b) * len(b) <= 200 or len(b) == 1 for b in batches)


def test_batched_codes_equal_one_by_one_codes(clips):
    codec = load_codec(CODEC_YAML, CODEC_CKPT)
    batched = encode_clips(codec, clips, batch_seconds=30.0, device="cpu", progress=False)
    alone = encode_clips(codec, clips, batch_seconds=1e-9, device="cpu", progress=False)
    for a, b in zip(batched, alone):
        np.testing.assert_array_equal(a, b)
    assert [len(c) for c in batched] == [int(np.ceil(len(c) / codec.hop_length)) for c in clips]


def test_shard_has_schema_metadata_and_every_utterance(audio_shard, tmp_path):
    out = tmp_path / "codes.parquet"
    assert extract_codes(audio_shard, CODEC_YAML, CODEC_CKPT, out) == 8
    table = pq.read_table(out)
    assert table.schema.names == CODES.names and table.schema.field("codes").type.value_type.bit_width == 16
    assert table.column("utt_id").to_pylist() == [f"u{i}" for i in range(8)]
    assert table.column("n_frames").to_pylist() == [len(c) for c in table.column("codes").to_pylist()]
    meta = file_metadata(out)
    assert meta["codec_id"] == codec_id(load_codec(CODEC_YAML, CODEC_CKPT))
    assert (float(meta["frame_rate"]), int(meta["sample_rate"]), int(meta["hop_length"])) == (40.0, 24000, 600)


def test_a_killed_job_leaves_no_output_and_a_rerun_completes(clips, tmp_path):
    audio_shard = tmp_path / "shard.parquet"  # enough clips that encoding is still running when the kill lands
    write_table([{"utt_id": f"u{i}", "speaker": "awb", "language": "en", "text": "words", "split": "train",
                  "source": "x.wav", "num_samples": len(c), "sample_rate": 24000, "source_loudness_lufs": -20.0,
                  "audio": encode_flac(c, 24000)} for i, c in enumerate(clips * 12)], AUDIO_SHARD, audio_shard)
    out = tmp_path / "codes.parquet"
    command = [sys.executable, "-m", "stages.extract_codes", "--audio", str(audio_shard), "--codec-config",
               str(CODEC_YAML), "--codec-checkpoint", str(CODEC_CKPT), "--out", str(out), "--batch-seconds", "0.5"]
    job = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
    for line in job.stderr:  # kill it once it is encoding, before it can write
        if "codec" in line and "on cpu" in line:
            job.send_signal(signal.SIGKILL)
            break
    job.wait()
    assert job.returncode == -signal.SIGKILL
    assert not out.exists(), "a killed job must not leave a file that looks complete"
    subprocess.run(command, check=True, capture_output=True)
    expected = tmp_path / "expected.parquet"
    extract_codes(audio_shard, CODEC_YAML, CODEC_CKPT, expected)
    assert pq.read_table(out).equals(pq.read_table(expected))


def test_sample_rate_mismatch_is_a_clear_error(tmp_path, clips):
    shard = tmp_path / "shard.parquet"
    write_table([{"utt_id": "u", "speaker": "s", "language": "en", "text": "t", "split": "train", "source": "x",
                  "num_samples": 16000, "sample_rate": 16000, "source_loudness_lufs": -20.0,
                  "audio": encode_flac(clips[0][:16000], 16000)}], AUDIO_SHARD, shard)
    with pytest.raises(ValueError, match="expects 24000 Hz"):
        extract_codes(shard, CODEC_YAML, CODEC_CKPT, tmp_path / "out.parquet")
