"""The scorer registry: stable columns, NaN with a reason when a metric cannot run, plug-ins, summaries, CLI."""

from __future__ import annotations

import math
import sys

import numpy as np
import pytest
import soundfile as sf

from conftest import ARCTIC
from stages.common.audio import resample
from stages.metrics import SCORERS, MissingPackage, Sample, Scorer, columns, score, summarize
from stages.metrics.__main__ import main
from stages.metrics.common import require

TEXT = "And you always want to see it in the superlative degree."


@pytest.fixture(scope="module")
def speech() -> np.ndarray:
    return sf.read(ARCTIC / "arctic_a0007.wav", dtype="float32")[0]


@pytest.fixture(scope="module")
def perfect_resynthesis_row(speech):
    """All built-in metrics of a clip that went through 24 kHz and back, against itself."""
    sample = Sample.make(resample(speech, 16000, 24000), 24000, TEXT, "en", reference=speech, reference_rate=16000)
    return score(sample)


def test_every_builtin_metric_runs_and_fills_the_declared_columns(perfect_resynthesis_row):
    row = perfect_resynthesis_row
    assert list(row) == columns()
    assert [c for c in row if c.endswith("_note") and row[c]] == []
    assert row["transcript"] == "and you always want to see it in the superlative degree."  # Whisper tiny.en
    assert row["ps_transcript"] == "and you always want to see it in the superlative degree"  # pocketsphinx
    assert (row["ps_wer"], row["ps_words"], row["ps_word_errors"]) == (0.0, 11, 0)
    assert (row["wer"], row["words"], row["word_errors"]) == (0.0, 11, 0)
    assert row["stoi"] > 0.999 and row["pesq"] > 4.5 and row["speaker_sim"] > 0.99
    assert row["mel_l1"] < 0.05 and row["dtw_mcd"] < 1.0  # a different sentence scores ~5 dB
    assert row["duration_ratio"] == pytest.approx(1.0)
    assert 1.0 <= row["dnsmos_ovrl"] <= 5.0


def test_mandarin_has_no_recogniser_but_gets_dtw_and_durations(speech):
    row = score(Sample.make(speech, 16000, "你好", "zh", reference=speech), ["asr", "dtw", "duration"])
    assert math.isnan(row["wer"]) and row["transcript"] == ""
    assert "no whisper recogniser for 'zh'" in row["asr_note"]
    assert row["dtw_log_mel"] == 0.0 and row["speech_duration_ratio"] == 1.0


def test_reference_metrics_without_a_reference_are_nan_with_a_reason(speech):
    row = score(Sample.make(speech, 16000, TEXT, "en"), ["stoi", "speaker"])
    assert math.isnan(row["stoi"]) and math.isnan(row["speaker_sim"])
    assert "ground-truth clip" in row["stoi_note"] and "ground-truth clip" in row["speaker_note"]


def test_a_missing_package_degrades_one_metric_and_names_it(monkeypatch, speech):
    monkeypatch.setitem(sys.modules, "pesq", None)  # what an uninstalled package looks like to import
    with pytest.raises(MissingPackage, match="pip install 'pesq==0.0.4'"):
        require("pesq", "pesq==0.0.4")
    row = score(Sample.make(speech, 16000, TEXT, "en", reference=speech), ["pesq", "stoi"])
    assert math.isnan(row["pesq"]) and "pip install 'pesq==0.0.4'" in row["pesq_note"]
    assert row["stoi"] == pytest.approx(1.0) and row["stoi_note"] == ""


def test_plugged_in_scorers_join_the_row_and_are_checked(monkeypatch, speech):
    monkeypatch.setitem(SCORERS, "loudness", Scorer(("peak",), lambda s: {"peak": float(np.abs(s.audio).max())}))
    row = score(Sample.make(speech, 16000, TEXT, "en"), ["loudness"])
    assert row == {"peak": pytest.approx(float(np.abs(speech).max())), "loudness_note": ""}
    monkeypatch.setitem(SCORERS, "liar", Scorer(("a",), lambda s: {"b": 1.0}))
    with pytest.raises(ValueError, match="returned columns"):
        score(Sample.make(speech, 16000, TEXT, "en"), ["liar"])
    monkeypatch.setitem(SCORERS, "clash", Scorer(("peak",), lambda s: {"peak": 0.0}))
    with pytest.raises(ValueError, match="same column"):
        columns(["loudness", "clash"])
    with pytest.raises(KeyError, match="unknown metric"):
        score(Sample.make(speech, 16000, TEXT, "en"), ["whisper"])


def test_summary_weights_wer_by_reference_length():
    rows = [{"wer": 0.1, "words": 10, "word_errors": 1, "stoi": 0.9, "stoi_note": ""},
            {"wer": 1.0, "words": 2, "word_errors": 2, "stoi": math.nan, "stoi_note": "Unmeasurable: x"}]
    summary = summarize(rows)
    assert summary["wer"] == pytest.approx(3 / 12)
    assert summary["wer_mean_of_utterances"] == pytest.approx(0.55)
    assert (summary["words"], summary["word_errors"], summary["utterances"]) == (12, 3, 2)
    assert (summary["stoi"], summary["stoi_n"]) == (pytest.approx(0.9), 1)


def test_a_second_recogniser_is_summarised_by_its_own_counts():
    rows = [{"wer": 0.0, "words": 10, "word_errors": 0, "ps_wer": 0.5, "ps_words": 10, "ps_word_errors": 5,
             "ps_cer": 0.25, "ps_chars": 40, "ps_char_errors": 10},
            {"wer": 0.5, "words": 2, "word_errors": 1, "ps_wer": 1.0, "ps_words": 2, "ps_word_errors": 2,
             "ps_cer": 1.0, "ps_chars": 8, "ps_char_errors": 8}]
    summary = summarize(rows)
    assert summary["wer"] == pytest.approx(1 / 12) and summary["ps_wer"] == pytest.approx(7 / 12)
    assert summary["ps_cer"] == pytest.approx(18 / 48) and summary["ps_word_errors"] == 7


def test_cli_prints_every_requested_metric_for_one_pair(capsys):
    main([str(ARCTIC / "arctic_a0007.wav"), str(ARCTIC / "arctic_a0009.wav"), TEXT, "--metrics", "asr,dtw,stoi"])
    out = capsys.readouterr().out
    assert "'and you always want to see it in the superlative degree.'  (WER 0.000" in out  # the reference's own
    assert "'He turned sharply and faced Gregson across the table.'" in out
    assert "dtw_mcd" in out and "not time-aligned" in out


def test_summarize_rows_scored_with_different_metric_sets():
    """ASR runs on some voices only, so one system's rows need not share columns."""
    rows = [{"wer": 0.5, "words": 4, "word_errors": 2, "stoi": 0.9}, {"stoi": 0.7}]
    summary = summarize(rows)
    assert summary["wer"] == 0.5 and summary["wer_n"] == 1
    assert summary["stoi"] == pytest.approx(0.8) and summary["stoi_n"] == 2
