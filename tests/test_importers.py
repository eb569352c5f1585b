"""Each corpus importer on a tiny fixture in its real layout (tests/fixtures/corpora/)."""

from __future__ import annotations

import pytest

from conftest import CORPORA
from stages.importers import import_corpus


def _items(fmt, path, **kwargs):
    return list(import_corpus(fmt, path, **kwargs))


def test_ljspeech_prefers_the_normalized_column():
    items = _items("ljspeech", CORPORA / "ljspeech")
    assert [i.utt_id for i in items] == ["LJ001-0001", "LJ001-0002"]
    assert items[1].text == "In fourteen fifty it began."
    assert {i.speaker for i in items} == {"ljspeech"} and {i.language for i in items} == {"en"}
    assert all(i.source.endswith(f"wavs/{i.utt_id}.wav") for i in items)


def test_libritts_reads_speaker_from_the_folder_and_text_from_normalized_txt():
    items = _items("libritts", CORPORA / "libritts")
    assert [(i.utt_id, i.speaker) for i in items] == [
        ("19_198_000000_000000", "19"), ("19_198_000001_000000", "19"), ("26_495_000004_000000", "26")]
    assert items[1].text == "It was a dark night."


@pytest.mark.parametrize("mic", ["mic1", "mic2"])
def test_vctk_picks_the_configured_microphone(mic):
    items = _items("vctk", CORPORA / "vctk", vctk_mic=mic)
    assert [(i.utt_id, i.speaker) for i in items] == [("p225_001", "p225"), ("p226_002", "p226")]
    assert all(i.source.endswith(f"_{mic}.flac") for i in items)
    assert items[0].text == "Please call Stella."


def test_aishell3_strips_pinyin():
    items = _items("aishell3", CORPORA / "aishell3")
    assert [(i.utt_id, i.speaker, i.text) for i in items] == [
        ("SSB00050001", "SSB0005", "广州女大学生"), ("SSB00050002", "SSB0005", "我们走吧")]
    assert {i.language for i in items} == {"zh"}


@pytest.mark.parametrize("fmt, name", [("csv", "table.csv"), ("jsonl", "table.jsonl")])
def test_tables_resolve_paths_relative_to_the_file(fmt, name):
    items = _items(fmt, CORPORA / "table" / name)
    assert [(i.utt_id, i.speaker, i.language) for i in items] == [("audio_a", "spk1", "en"), ("audio_b", "spk2", "zh")]
    assert items[0].source == str(CORPORA / "table" / "audio" / "a.wav")


def test_language_override():
    assert {i.language for i in _items("ljspeech", CORPORA / "ljspeech", language="en-GB")} == {"en-GB"}


def test_undecodable_transcript_line_is_reported_not_raised(tmp_path):
    (tmp_path / "wavs").mkdir()
    (tmp_path / "metadata.csv").write_bytes(b"LJ1|Fine.|Fine.\nLJ2|\xff\xfe bad|\xff\xfe bad\n")
    items = _items("ljspeech", tmp_path)
    assert items[0].problem is None and items[1].problem.startswith("undecodable_transcript")


def test_missing_corpus_and_wrong_layout_fail_clearly(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        _items("ljspeech", tmp_path / "nope")
    with pytest.raises(FileNotFoundError, match="metadata.csv"):
        _items("ljspeech", tmp_path)
    (tmp_path / "t.csv").write_text("file,words\nx.wav,hi\n")
    with pytest.raises(ValueError, match=r"missing field\(s\) \['path', 'text', 'speaker'\]"):
        _items("csv", tmp_path / "t.csv")
