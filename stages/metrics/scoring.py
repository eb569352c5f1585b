"""The scorer registry: every per-utterance metric by name, one row of scores per clip, corpus summaries.

    python -m stages.metrics REF.wav HYP.wav "reference text"     # all registered scorers on one pair

A `Sample` is a clip to judge plus what it is judged against (its text, the ground-truth clip of the
same sentence, recordings of the target voice), all at 16 kHz. `SCORERS` maps a metric name to a
`Scorer`: the columns it fills and a function computing them. `score` runs the chosen scorers; one that
cannot measure this clip (no speech found, clips not aligned, package missing) fills its columns with
NaN and says why in `<name>_note`, so a table keeps the same columns and the other metrics still run.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from stages.metrics import asr, mos, signal, speaker
from stages.metrics.common import SCORING_RATE, MissingPackage, Unmeasurable, to_scoring_rate
from stages.metrics.wer import char_errors, word_errors

Value = float | int | str


@dataclass(frozen=True, eq=False)
class Sample:
    """One clip and what it is judged against; build it with `Sample.make` to bring everything to 16 kHz."""

    audio: np.ndarray  # the clip being judged
    text: str  # what it should say
    language: str  # "en" or "zh"
    reference: np.ndarray | None = None  # ground truth of the same sentence and voice (aligned metrics, DTW)
    voice: tuple[np.ndarray, ...] = ()  # other recordings of the target voice (speaker reference)

    @classmethod
    def make(cls, audio: np.ndarray, sample_rate: int, text: str, language: str,
             reference: np.ndarray | None = None, reference_rate: int | None = None,
             voice: Sequence[np.ndarray] = (), voice_rate: int | None = None) -> Sample:
        """Resample everything to 16 kHz; reference_rate defaults to sample_rate, voice_rate to reference_rate."""
        reference_rate = reference_rate or sample_rate
        return cls(audio=to_scoring_rate(audio, sample_rate), text=text, language=language,
                   reference=None if reference is None else to_scoring_rate(reference, reference_rate),
                   voice=tuple(to_scoring_rate(v, voice_rate or reference_rate) for v in voice))

    def require_reference(self) -> np.ndarray:
        if self.reference is None:
            raise Unmeasurable("needs the ground-truth clip of this sentence")
        return self.reference


@dataclass(frozen=True)
class Scorer:
    columns: tuple[str, ...]  # numeric columns; a failed score leaves NaN in each
    measure: Callable[[Sample], dict[str, Value]]
    text_columns: tuple[str, ...] = ()  # string columns; a failed score leaves ""


# ---------------------------------------------------------------- the built-in scorers

ASR_COLUMNS = ("wer", "cer", "words", "word_errors", "chars", "char_errors")
RATE_COUNTS = {"wer": ("word_errors", "words"), "cer": ("char_errors", "chars")}  # rate -> (errors, length)


def transcript_scores(text: str, transcript: str, language: str, prefix: str = "") -> dict[str, Value]:
    """The ASR columns (named `prefix` + column) for one recognised transcript; any recogniser can reuse this."""
    words, chars = word_errors(text, transcript, language), char_errors(text, transcript, language)
    values = {"transcript": transcript, "wer": words.rate, "cer": chars.rate, "words": words.reference_length,
              "word_errors": words.errors, "chars": chars.reference_length, "char_errors": chars.errors}
    return {prefix + k: v for k, v in values.items()}


def asr_scorer(engine: str, prefix: str = "") -> Scorer:
    """WER and CER of what `engine` (a key of `asr.RECOGNIZERS`) hears, in columns `prefix` + wer, ..."""

    def measure(sample: Sample) -> dict[str, Value]:
        if sample.language not in asr.languages(engine):
            raise Unmeasurable(f"no {engine} recogniser for {sample.language!r} here")
        return transcript_scores(sample.text, asr.recognizer(sample.language, engine)(sample.audio),
                                 sample.language, prefix)

    return Scorer(tuple(prefix + c for c in ASR_COLUMNS), measure, (prefix + "transcript",))


def speaker_scorer(embedder_factory: Callable[[], speaker.Embedder] = speaker.default_embedder,
                   column: str = "speaker_sim") -> Scorer:
    """Cosine similarity to the target voice (mean embedding of `Sample.voice`, else of the reference clip).

    Voice embeddings are cached by the bytes of their clips, so each voice is embedded once per run.
    """
    bank = speaker.VoiceBank(embedder_factory)

    def measure(sample: Sample) -> dict[str, Value]:
        clips = sample.voice or (sample.require_reference(),)
        digest = hashlib.blake2b(b"".join(np.ascontiguousarray(c).tobytes() + b"|" for c in clips)).digest()
        bank.add(digest, clips, SCORING_RATE)
        return {column: bank.similarities(sample.audio, SCORING_RATE, [digest])[digest]}

    return Scorer((column,), measure)


def _dnsmos(sample: Sample) -> dict[str, Value]:
    return {f"dnsmos_{k}": v for k, v in mos.dnsmos(sample.audio, SCORING_RATE).items()}


def _pair(metric: Callable[[np.ndarray, np.ndarray, int], float]) -> Callable[[Sample], float]:
    return lambda s: metric(s.require_reference(), s.audio, SCORING_RATE)


_stoi, _pesq, _mel_l1 = _pair(signal.stoi), _pair(signal.pesq_wideband), _pair(signal.mel_l1)
_dtw_mel, _dtw_mcd = _pair(signal.dtw_log_mel_distance), _pair(signal.dtw_mel_cepstral_distortion)


def _durations(s: Sample) -> dict[str, Value]:
    ref = s.require_reference()
    return {"duration_ratio": signal.duration_ratio(ref, s.audio, SCORING_RATE),
            "speech_duration_ratio": signal.duration_ratio(ref, s.audio, SCORING_RATE, speech_only=True)}


SCORERS: dict[str, Scorer] = {
    "asr": asr_scorer("whisper"),  # the default recogniser; `asr.use_whisper_model` swaps in a bigger Whisper
    "asr_pocketsphinx": asr_scorer("pocketsphinx", prefix="ps_"),
    "stoi": Scorer(("stoi",), lambda s: {"stoi": _stoi(s)}),
    "pesq": Scorer(("pesq",), lambda s: {"pesq": _pesq(s)}),
    "mel_l1": Scorer(("mel_l1",), lambda s: {"mel_l1": _mel_l1(s)}),
    "dtw": Scorer(("dtw_log_mel", "dtw_mcd"), lambda s: {"dtw_log_mel": _dtw_mel(s), "dtw_mcd": _dtw_mcd(s)}),
    "duration": Scorer(("duration_ratio", "speech_duration_ratio"), _durations),
    "speaker": speaker_scorer(),
    "dnsmos": Scorer(("dnsmos_ovrl", "dnsmos_sig", "dnsmos_bak", "dnsmos_p808"), _dnsmos),
}
ALIGNED = ("stoi", "pesq", "mel_l1")  # only for clips time-aligned with their reference (codec resynthesis)


def _chosen(metrics: Iterable[str] | None) -> list[str]:
    names = list(SCORERS) if metrics is None else list(metrics)
    unknown = [n for n in names if n not in SCORERS]
    if unknown:
        raise KeyError(f"unknown metric(s) {unknown}; registered: {sorted(SCORERS)}")
    return names


def columns(metrics: Iterable[str] | None = None) -> list[str]:
    """Every column `score` fills for these metrics, in order, notes included."""
    out: list[str] = []
    for name in _chosen(metrics):
        out += [*SCORERS[name].text_columns, *SCORERS[name].columns, f"{name}_note"]
    if len(set(out)) != len(out):
        raise ValueError(f"two scorers fill the same column: {sorted({c for c in out if out.count(c) > 1})}")
    return out


def score(sample: Sample, metrics: Iterable[str] | None = None) -> dict[str, Value]:
    """One row: the chosen metrics (all registered ones by default) of one sample."""
    names = _chosen(metrics)
    row: dict[str, Value] = dict.fromkeys(columns(names))
    for name in names:
        scorer = SCORERS[name]
        try:
            values, note = scorer.measure(sample), ""
        except (Unmeasurable, MissingPackage) as e:
            values, note = {}, f"{type(e).__name__}: {e}"
        expected = set(scorer.columns) | set(scorer.text_columns)
        if values and set(values) != expected:
            raise ValueError(f"scorer {name!r} returned columns {sorted(values)}, declared {sorted(expected)}")
        for column in scorer.columns:
            row[column] = values.get(column, math.nan)
        for column in scorer.text_columns:
            row[column] = values.get(column, "")
        row[f"{name}_note"] = note
    return row


def _rate_parts(column: str, names: Sequence[str]) -> tuple[str, str] | None:
    """(errors, length) columns behind a WER/CER column such as `wer` or `ps_cer`, if the rows have them."""
    for rate, (errors, length) in RATE_COUNTS.items():
        if column.endswith(rate):
            prefix = column[: -len(rate)]
            if prefix + errors in names and prefix + length in names:
                return prefix + errors, prefix + length
    return None


def _is_count(column: str) -> bool:
    return any(column.endswith(c) for c in ("words", "word_errors", "chars", "char_errors"))


def summarize(rows: Sequence[dict[str, Value]]) -> dict[str, float | int]:
    """Corpus figures over rows from `score`: WER/CER as total errors over total reference units (plus the
    mean of per-utterance rates), every other numeric column as the mean over rows where it was measured;
    `<column>_n` counts those rows."""
    summary: dict[str, float | int] = {"utterances": len(rows)}
    # Rows of one table may come from different scorer sets (ASR only on some voices): a column counts
    # where it is present, and it is numeric if every present value is a number.
    names = list(dict.fromkeys(c for r in rows for c in r))
    numeric = [c for c in names if not c.endswith("_note")
               and all(isinstance(r[c], (int, float)) for r in rows if c in r)]
    for column in numeric:
        measured = [r for r in rows if column in r and math.isfinite(r[column])]
        summary[f"{column}_n"] = len(measured)
        parts = _rate_parts(column, names)
        if parts:
            errors, length = parts
            total = sum(r[length] for r in measured)
            summary[column] = sum(r[errors] for r in measured) / total if total else math.nan
            summary[f"{column}_mean_of_utterances"] = (sum(r[column] for r in measured) / len(measured)
                                                       if measured else math.nan)
        elif _is_count(column):
            summary[column] = sum(r[column] for r in measured)
        else:
            summary[column] = sum(r[column] for r in measured) / len(measured) if measured else math.nan
    return summary
