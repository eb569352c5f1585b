"""WER/CER: one normalisation on both sides, error counts, and corpus rates weighted by length."""

from __future__ import annotations

import pytest

from stages.metrics.wer import ErrorCounts, cer, char_errors, corpus_rate, normalize_for_scoring, wer, word_errors


def test_identical_text_scores_zero():
    text = "He turned sharply, and faced Gregson across the table."
    assert wer(text, text) == 0.0
    assert cer(text, text) == 0.0


def test_case_punctuation_and_numbers_do_not_count_as_errors():
    assert wer("Dr. Smith paid $5 -- it's well-known!", "doctor smith paid five dollars its well known") == 0.0
    assert normalize_for_scoring("In 1984, 3 cats.", "en") == "in nineteen eighty four three cats"


def test_silence_transcript_scores_one_and_insertions_can_exceed_one():
    assert word_errors("he turned sharply", "") == ErrorCounts(0, 3, 0, 3)
    assert wer("he turned sharply", "") == 1.0
    assert wer("yes", "yes yes yes") == 2.0


def test_substitutions_deletions_insertions_are_counted_separately():
    assert word_errors("the cat sat", "the bat sat") == ErrorCounts(1, 0, 0, 3)
    assert word_errors("the cat sat", "the sat") == ErrorCounts(0, 1, 0, 3)
    assert word_errors("the cat sat", "the cat sat down") == ErrorCounts(0, 0, 1, 3)
    assert word_errors("the cat sat", "the cat sat down").rate == pytest.approx(1 / 3)


def test_empty_reference_is_an_error_not_a_zero():
    with pytest.raises(ValueError, match="no words"):
        wer(" ... ", "anything")


def test_mandarin_cer_ignores_spaces_and_maps_digits():
    assert cer("我有3个苹果。", "我 有 三 个 苹 果", "zh") == 0.0
    assert char_errors("我有三个苹果", "我有两个苹果", "zh") == ErrorCounts(1, 0, 0, 6)


def test_corpus_rate_is_total_errors_over_total_words_not_a_mean():
    long = word_errors("one two three four five six seven eight nine ten", "one two three four five six seven "
                                                                              "eight nine ten")
    short = word_errors("hello", "")
    rate = corpus_rate([long, short])
    assert rate.corpus == pytest.approx(1 / 11)
    assert rate.mean_of_utterances == pytest.approx(0.5)
    assert (rate.utterances, rate.errors, rate.reference_length) == (2, 1, 11)
    with pytest.raises(ValueError):
        corpus_rate([])
