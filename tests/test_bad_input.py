"""A corpus with every kind of bad item: each is quarantined with its reason, every good item survives once."""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest
import soundfile as sf

from conftest import ARCTIC
from stages.common.audio import read_audio, resample
from stages.config.audio import AudioConfig
from stages.config.corpus import CorpusConfig
from stages.prepare import prepare
from stages.resample import resample_shard

SHARDS = 3


@pytest.fixture(scope="module")
def bad_corpus(tmp_path_factory):
    """A JSONL corpus: (utt_id -> expected quarantine reason code, or None for a good item)."""
    root = tmp_path_factory.mktemp("bad_corpus")
    speech, rate = read_audio(str(ARCTIC / "arctic_a0009.wav"))
    speech = speech[0]
    rows, expected, raw_lines = [], {}, []

    def add(utt_id, audio_name, reason, text="He turned sharply."):
        rows.append({"utt_id": utt_id, "path": audio_name, "text": text, "speaker": "s1", "language": "en"})
        expected[utt_id] = reason

    for target_rate, subtype, fmt, channels in [(8000, "PCM_U8", "WAV", 1), (16000, "PCM_16", "WAV", 2),
                                                (22050, "PCM_24", "WAV", 1), (44100, "FLOAT", "WAV", 6),
                                                (48000, "PCM_16", "FLAC", 2), (96000, "PCM_24", "FLAC", 1),
                                                (24000, "VORBIS", "OGG", 1)]:
        name = f"good_{target_rate}_{subtype.lower()}.{fmt.lower()}"
        sf.write(root / name, np.stack([resample(speech, rate, target_rate)] * channels, 1), target_rate,
                 subtype=subtype, format=fmt)
        add(name.split(".")[0], name, None)

    sf.write(root / "full.wav", speech, rate, subtype="PCM_16")
    data = (root / "full.wav").read_bytes()
    (root / "truncated.wav").write_bytes(data[: len(data) // 2])
    add("truncated", "truncated.wav", "truncated")
    (root / "corrupt.wav").write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt " + bytes(range(200)))
    add("corrupt", "corrupt.wav", "corrupt")
    (root / "empty.wav").write_bytes(b"")
    add("empty", "empty.wav", "empty_file")
    sf.write(root / "zero.wav", np.zeros(0, np.float32), rate, subtype="PCM_16")
    add("zero_length", "zero.wav", "zero_length")
    sf.write(root / "silent.wav", np.zeros(rate * 2, np.float32), rate, subtype="PCM_16")
    add("silent", "silent.wav", "all_silent")
    nan = speech.copy()
    nan[1000:1010] = np.nan
    sf.write(root / "nan.wav", nan, rate, subtype="FLOAT")
    add("nan", "nan.wav", "non_finite")
    (root / "video.mp4").write_bytes(b"\x00\x00\x00\x20ftypisom" + bytes(500))
    add("unsupported", "video.mp4", "unsupported_format")
    add("missing", "no_such_file.wav", "missing_file")
    sf.write(root / "ok_but_untitled.wav", speech, rate, subtype="PCM_16")
    add("empty_text", "ok_but_untitled.wav", "empty_transcript", text="   ")
    add("duplicate_a", "full.wav", None)
    rows.append({**rows[-1], "path": "good_16000_pcm_16.wav"})  # a second item claiming utt_id duplicate_a
    sf.write(root / "short.wav", speech[:rate // 5], rate, subtype="PCM_16")
    add("short", "short.wav", "too_short")
    sf.write(root / "long.wav", np.tile(speech, 8), rate, subtype="PCM_16")
    add("long", "long.wav", "too_long")

    raw_lines = [json.dumps(r).encode() for r in rows]
    raw_lines.insert(3, b'{"utt_id": "latin1", "path": "full.wav", "text": "caf\xe9", "speaker": "s1"}')
    raw_lines.insert(5, b'{"utt_id": "broken json", ')
    (root / "corpus.jsonl").write_bytes(b"\n".join(raw_lines) + b"\n")
    return root, expected


def test_every_bad_item_is_quarantined_with_its_reason_and_good_items_survive_once(bad_corpus, tmp_path):
    root, expected = bad_corpus
    cfg = CorpusConfig(format="jsonl", path=str(root / "corpus.jsonl"))
    kept, rejected = prepare(root / "corpus.jsonl", cfg, tmp_path / "manifest.parquet", tmp_path / "q.parquet")
    audio_cfg = AudioConfig(max_seconds=20.0)
    for shard in range(SHARDS):
        resample_shard(tmp_path / "manifest.parquet", shard, SHARDS, audio_cfg,
                       tmp_path / f"shard-{shard}.parquet", tmp_path / f"quarantine-{shard}.parquet")

    quarantine = pq.read_table(tmp_path / "q.parquet").to_pylist()
    for shard in range(SHARDS):
        quarantine += pq.read_table(tmp_path / f"quarantine-{shard}.parquet").to_pylist()
    reasons = {}
    for row in quarantine:
        reasons.setdefault(row["utt_id"], []).append(row["reason"].split(":")[0])
        assert row["stage"] in ("prepare", "resample") and row["source"]

    assert reasons.pop("duplicate_a") == ["duplicate_utt_id"]
    assert reasons.pop("corpus_line4") == ["undecodable_transcript"]
    assert reasons.pop("corpus_line6") == ["undecodable_transcript"]
    for utt_id, reason in expected.items():
        if reason is None:
            assert utt_id not in reasons, f"good item {utt_id} was quarantined: {reasons.get(utt_id)}"
        else:
            assert reasons.pop(utt_id) == [reason], utt_id
    assert not reasons, f"unexpected quarantine rows: {reasons}"

    shard_ids = []
    for shard in range(SHARDS):
        table = pq.read_table(tmp_path / f"shard-{shard}.parquet")
        shard_ids += table.column("utt_id").to_pylist()
        assert set(table.column("sample_rate").to_pylist()) <= {24000}
    good = sorted(u for u, r in expected.items() if r is None)
    assert sorted(shard_ids) == good, "every good item lands in exactly one shard"
