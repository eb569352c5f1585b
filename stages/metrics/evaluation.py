"""What codec_eval and evaluate share: which clips are scored, with which metrics, and the corpus summaries.

Rows ("systems") per held-out utterance: `ground_truth` (the corpus audio), `codec` (its codes decoded: the
ceiling any LM on these codes can reach), one per model and mode (`sft`, `sft_zero_shot`, ...), and two sanity
rows that must score WER 100%: `silence` and `noise`. English intelligibility is WER/CER by Whisper tiny.en (and
pocketsphinx beside it, `ps_*` columns) on `asr_voices`; Mandarin, with no offline recogniser unless `asr_model`
is a multilingual Whisper, is DTW-aligned mel distance and duration ratio. Speaker similarity compares each clip
with its own voice's training clips and with every other voice's, so "sounds like the right speaker" is measured
against "sounds like a speaker".
"""

from __future__ import annotations

import json
import logging
import math
from collections import defaultdict
from pathlib import Path

import numpy as np

from stages.common.audio import decode_flac
from stages.common.tables import AUDIO_SHARD, SCORES_FILE, read_table, write_scores
from stages.config.base import to_dict
from stages.config.eval import EvalConfig
from stages.metrics import asr
from stages.metrics.common import SCORING_RATE, Unmeasurable
from stages.metrics.scoring import Sample, score, summarize
from stages.metrics.speaker import VoiceBank

PROXY_NOTE = ("Offline proxies, not the paper metrics: WER/CER by Whisper tiny.en (not large-v3; its language model "
              "can restore a famous verse from poor audio, so read CER beside WER) and by pocketsphinx (ps_*), "
              "speaker similarity by resemblyzer (not WavLM), MOS by DNSMOS (not UTMOS). Compare a model's row with "
              "the ground-truth and codec rows of the same voices, never with published numbers.")

# Which scorers each system gets; aligned metrics (STOI, PESQ, mel L1) need sample-aligned clips.
METRICS = {
    "ground_truth": ("asr", "asr_pocketsphinx", "dnsmos"),
    "codec": ("asr", "asr_pocketsphinx", "stoi", "pesq", "mel_l1", "dtw", "dnsmos"),
    "model": ("asr", "asr_pocketsphinx", "dtw", "duration", "dnsmos"),
    "sanity": ("asr", "asr_pocketsphinx"),
}
ASR_ENGINES = {"asr": "whisper", "asr_pocketsphinx": "pocketsphinx"}


def read_clips(audio_shards: list[Path], reference_clips: int
               ) -> tuple[dict[str, dict], dict[str, list[np.ndarray]], int]:
    """Evaluation rows with their audio, a few training clips per voice, and the sample rate."""
    rows, voice_clips, rate = {}, defaultdict(list), 0
    for path in audio_shards:
        for row in read_table(path, AUDIO_SHARD).to_pylist():
            if row["split"] == "eval":
                row["samples"], rate = decode_flac(row["audio"])
                rows[row["utt_id"]] = row
            elif row["split"] == "train":
                voice_clips[row["speaker"]].append(row)
    references = {}
    for voice, clips in voice_clips.items():
        chosen = sorted(clips, key=lambda r: r["utt_id"])
        references[voice] = [decode_flac(r["audio"])[0] for r in chosen[:reference_clips]]
    return rows, references, rate


def selected(rows: dict[str, dict], cfg: EvalConfig) -> list[str]:
    per_voice = defaultdict(list)
    for utt_id in sorted(rows):
        per_voice[rows[utt_id]["speaker"]].append(utt_id)
    return [u for voice in sorted(per_voice) for u in per_voice[voice][:cfg.sentences_per_voice]]


def metrics_for(system_kind: str, row: dict, cfg: EvalConfig) -> list[str]:
    chosen = list(METRICS[system_kind])
    if not cfg.pocketsphinx:
        chosen.remove("asr_pocketsphinx")
    for metric, engine in ASR_ENGINES.items():
        recognised = row["language"] in asr.languages(engine)
        if metric in chosen and (not recognised or (row["language"] == "en" and cfg.asr_voices
                                                    and row["speaker"] not in cfg.asr_voices)):
            chosen.remove(metric)
    if not cfg.dnsmos:
        chosen = [m for m in chosen if m != "dnsmos"]
    return chosen


def voice_bank(references: dict[str, list[np.ndarray]], rate: int) -> VoiceBank:
    """Each voice's reference embedding, from a few of its training clips."""
    bank = VoiceBank(capacity=max(64, len(references)))
    for voice, clips in sorted(references.items()):
        bank.add(voice, clips, rate)
    return bank


def score_row(system: str, kind: str, row: dict, audio: np.ndarray, rate: int, voices: VoiceBank,
               cfg: EvalConfig) -> dict:
    sample = Sample.make(audio, rate, row["text"], row["language"], reference=row["samples"], reference_rate=rate)
    result = {"system": system, "utt_id": row["utt_id"], "voice": row["speaker"], "language": row["language"],
              "text": row["text"], "seconds": len(audio) / rate,
              **score(sample, metrics_for(kind, row, cfg))}
    if kind != "sanity" and row["speaker"] in voices.voices:
        try:
            sims = voices.similarities(sample.audio, SCORING_RATE)
        except Unmeasurable as e:
            result.update(speaker_sim=math.nan, speaker_sim_other=math.nan, speaker_sim_note=str(e))
            return result
        others = [s for v, s in sims.items() if v != row["speaker"]]
        result["speaker_sim"] = sims[row["speaker"]]
        result["speaker_sim_other"] = float(np.mean(others)) if others else math.nan
    return result


def summary(results: list[dict], cfg: EvalConfig) -> dict:
    groups = defaultdict(list)
    for r in results:
        groups[(r["system"], r["language"])].append(r)
    systems = {}
    for (system, language), rows in sorted(groups.items()):
        stats = summarize(rows)
        for key in ("speaker_sim", "speaker_sim_other", "rtf"):
            values = [r[key] for r in rows if isinstance(r.get(key), float) and not math.isnan(r[key])]
            if values:
                stats[key] = float(np.mean(values))
        stops = [r["stop_reason"] for r in rows if r.get("stop_reason")]
        if stops:
            stats["stopped_by_eos"] = stops.count("eos") / len(stops)
        stats["clips"] = len(rows)
        systems.setdefault(system, {})[language] = stats
    return {"note": PROXY_NOTE, "config": to_dict(cfg), "systems": systems}


def log_summary(scores: dict, log: logging.Logger) -> None:
    """The headline figures of each system and language, one log line each."""
    shown_keys = ("wer", "cer", "ps_wer", "ps_cer", "stoi", "pesq", "speaker_sim", "speaker_sim_other",
                  "dtw_log_mel", "rtf")
    for system, languages in scores["systems"].items():
        for language, stats in languages.items():
            log.info("%-18s %s %s", system, language, {k: round(v, 3) for k, v in stats.items() if k in shown_keys})


def held_out(audio_shards: list[Path], cfg: EvalConfig, log: logging.Logger
             ) -> tuple[dict[str, dict], list[str], VoiceBank, int]:
    """The evaluation clips by utt_id, the ones to score, the voices' reference embeddings, and the rate.

    With `eval.asr_model` set, the scorer is switched to that Whisper model first.
    """
    import torch

    if cfg.asr_model:
        log.info("scoring with the Whisper model in %s (languages %s)", cfg.asr_model,
                 asr.use_whisper_model(cfg.asr_model, cfg.asr_device, cfg.asr_compute_type, torch.get_num_threads()))
    rows, references, rate = read_clips(audio_shards, cfg.voice_reference_clips)
    chosen = selected(rows, cfg)
    if not chosen:
        raise ValueError("no evaluation utterances in the audio shards (split == 'eval')")
    return rows, chosen, voice_bank(references, rate), rate


def write_results(results: list[dict], cfg: EvalConfig, folder: Path) -> dict:
    """The scored rows (SCORES_FILE) and their summary (metrics.json) into `folder`; returns the summary."""
    scores = summary(results, cfg)
    write_scores(results, folder / SCORES_FILE)
    (folder / "metrics.json").write_text(json.dumps(scores, indent=2, ensure_ascii=False, default=float) + "\n")
    return scores
