"""Word and character error rates after one normalisation applied to both sides.

    python -c "from stages.metrics.wer import wer; print(wer('Dr. Smith paid $5.', 'doctor smith paid five dollars'))"

Reference and recogniser output pass through the same `stages.text.normalize.normalize` (lower case,
numbers and money as words, abbreviations expanded) and then lose their punctuation, so "$5." and
"five dollars" match. Error counting is jiwer's Levenshtein alignment. A corpus's WER is total errors over
total reference words (`ErrorCounts.rate` of the summed counts), which weights long sentences by their
length; the mean of per-utterance rates is reported next to it, never instead of it.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass

import jiwer

from stages.text.normalize import normalize

_SPACES = re.compile(r"\s+")


@dataclass(frozen=True)
class ErrorCounts:
    """Edit operations aligning a hypothesis to a reference, in words or characters."""

    substitutions: int
    deletions: int
    insertions: int
    reference_length: int

    @property
    def errors(self) -> int:
        return self.substitutions + self.deletions + self.insertions

    @property
    def rate(self) -> float:
        return self.errors / self.reference_length

    def __add__(self, other: ErrorCounts) -> ErrorCounts:
        return ErrorCounts(self.substitutions + other.substitutions, self.deletions + other.deletions,
                           self.insertions + other.insertions, self.reference_length + other.reference_length)


def normalize_for_scoring(text: str, language: str) -> str:
    """The project's text normaliser, then punctuation and symbols removed and spaces collapsed.

    Apostrophes are deleted rather than spaced ("it's" -> "its") so contractions stay one word on both
    sides; other punctuation becomes a space, so "well-known" and "well known" agree.
    """
    text = normalize(text, language).replace("'", "")
    text = "".join(" " if unicodedata.category(c)[0] in "PS" else c for c in text)
    return _SPACES.sub(" ", text).strip()


def _characters(text: str, language: str) -> str:
    # Mandarin is written without spaces; any the normaliser left between characters are not characters.
    return text.replace(" ", "") if language == "zh" else text


def word_errors(reference: str, hypothesis: str, language: str = "en") -> ErrorCounts:
    """Word-level edits between normalised reference and hypothesis. An empty reference is an error."""
    ref, hyp = normalize_for_scoring(reference, language), normalize_for_scoring(hypothesis, language)
    if not ref:
        raise ValueError(f"reference {reference!r} has no words after normalisation; WER is undefined")
    out = jiwer.process_words(ref, hyp)
    return ErrorCounts(out.substitutions, out.deletions, out.insertions, out.substitutions + out.deletions + out.hits)


def char_errors(reference: str, hypothesis: str, language: str = "en") -> ErrorCounts:
    """Character-level edits (spaces count in English, not in Mandarin) after the same normalisation."""
    ref = _characters(normalize_for_scoring(reference, language), language)
    hyp = _characters(normalize_for_scoring(hypothesis, language), language)
    if not ref:
        raise ValueError(f"reference {reference!r} has no characters after normalisation; CER is undefined")
    out = jiwer.process_characters(ref, hyp)
    return ErrorCounts(out.substitutions, out.deletions, out.insertions, out.substitutions + out.deletions + out.hits)


def wer(reference: str, hypothesis: str, language: str = "en") -> float:
    return word_errors(reference, hypothesis, language).rate


def cer(reference: str, hypothesis: str, language: str = "en") -> float:
    return char_errors(reference, hypothesis, language).rate


@dataclass(frozen=True)
class CorpusRate:
    """Error rate over many utterances, both ways of averaging."""

    corpus: float  # total errors / total reference units: the figure to report
    mean_of_utterances: float  # unweighted mean of per-utterance rates: short sentences count as much as long
    utterances: int
    errors: int
    reference_length: int


def corpus_rate(counts: Iterable[ErrorCounts]) -> CorpusRate:
    counts = list(counts)
    if not counts:
        raise ValueError("no utterances to score")
    total = sum(counts[1:], counts[0])
    return CorpusRate(corpus=total.rate, mean_of_utterances=sum(c.rate for c in counts) / len(counts),
                      utterances=len(counts), errors=total.errors, reference_length=total.reference_length)
