"""Stage `evaluate`: score ground truth, codec resynthesis and every model's samples side by side.

    python -m stages.evaluate --audio results/demo/audio/shard-*.parquet --codes results/demo/codes/shard-*.parquet \
        --codec-config results/demo/codec/codec.yaml --codec-checkpoint results/demo/codec/codec.ckpt \
        --samples sft=results/demo/samples/sft pretrain=results/demo/samples/pretrain \
        --config-json '{}' --out results/demo/eval

Rows ("systems") per held-out utterance: `ground_truth` (the corpus audio), `codec` (its codes decoded:
the ceiling any LM on these codes can reach), one per model and mode (`sft`, `sft_zero_shot`, ...),
and two sanity rows that must score WER 100%: `silence` and `noise`. English intelligibility is
WER/CER by Whisper tiny.en (and pocketsphinx beside it, `ps_*` columns) on `asr_voices`; Mandarin, with
no offline recogniser unless `asr_model` is a multilingual Whisper, is DTW-aligned mel distance and
duration ratio. Speaker similarity compares each clip
with its own voice's training clips and with every other voice's, so "sounds like the right speaker"
is measured against "sounds like a speaker". These are offline proxies, not the paper metrics
(Whisper-large-v3 WER, WavLM similarity, UTMOS): see `stages.metrics` to plug those in.

Writes `utterances.parquet` (one row per system and clip), `metrics.json` (corpus summaries per system
and language, speaker-similarity matrix) and the ground-truth and resynthesised WAVs that the report plays.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import shutil
from collections import defaultdict
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import soundfile as sf
import torch
from tqdm import tqdm

from stages.atomic import atomic_output
from stages.audio import decode_flac
from stages.codec import load_codec
from stages.config import from_dict, to_dict
from stages.metrics import SCORING_RATE, Sample, Unmeasurable, score, summarize, to_scoring_rate
from stages.metrics import asr
from stages.metrics import speaker as speaker_metric
from stages.eval_config import EvalConfig
from stages.synthesize import SAMPLES_FILE
from stages.tables import AUDIO_SHARD, CODES, read_table

log = logging.getLogger("evaluate")
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


def _read_clips(audio_shards: list[Path], reference_clips: int
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


def _selected(rows: dict[str, dict], cfg: EvalConfig) -> list[str]:
    per_voice = defaultdict(list)
    for utt_id in sorted(rows):
        per_voice[rows[utt_id]["speaker"]].append(utt_id)
    return [u for voice in sorted(per_voice) for u in per_voice[voice][:cfg.sentences_per_voice]]


def _metrics_for(system_kind: str, row: dict, cfg: EvalConfig) -> list[str]:
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


class _Voices:
    """Speaker similarity of a clip to every voice's reference embedding."""

    def __init__(self, references: dict[str, list[np.ndarray]], rate: int):
        self.embedder = speaker_metric.default_embedder()
        self.voices = {v: speaker_metric.voice_embedding([to_scoring_rate(c, rate) for c in clips], SCORING_RATE,
                                                         self.embedder)
                       for v, clips in sorted(references.items())}

    def similarities(self, audio16: np.ndarray) -> dict[str, float]:
        e = speaker_metric.embed(audio16, SCORING_RATE, self.embedder)
        return {v: speaker_metric.cosine_similarity(e, ref) for v, ref in self.voices.items()}


def _score_row(system: str, kind: str, row: dict, audio: np.ndarray, rate: int, voices: _Voices,
               cfg: EvalConfig) -> dict:
    sample = Sample.make(audio, rate, row["text"], row["language"], reference=row["samples"], reference_rate=rate)
    result = {"system": system, "utt_id": row["utt_id"], "voice": row["speaker"], "language": row["language"],
              "text": row["text"], "seconds": len(audio) / rate,
              **score(sample, _metrics_for(kind, row, cfg))}
    if kind != "sanity" and row["speaker"] in voices.voices:
        try:
            sims = voices.similarities(sample.audio)
        except Unmeasurable as e:
            result.update(speaker_sim=math.nan, speaker_sim_other=math.nan, speaker_sim_note=str(e))
            return result
        others = [s for v, s in sims.items() if v != row["speaker"]]
        result["speaker_sim"] = sims[row["speaker"]]
        result["speaker_sim_other"] = float(np.mean(others)) if others else math.nan
    return result


BASELINE_SYSTEMS = ("ground_truth", "codec", "silence", "noise")


def _score_baseline(rows: dict[str, dict], selected: list[str], codes_shards: list[Path], codec_config: Path,
                    codec_checkpoint: Path, rate: int, voices: _Voices, cfg: EvalConfig, tmp: Path) -> list[dict]:
    """Ground truth, its codec resynthesis (WAVs kept for the report) and the silence/noise sanity rows."""
    codes = {r["utt_id"]: r["codes"] for p in codes_shards for r in read_table(p, CODES).to_pylist()
             if r["utt_id"] in rows}
    codec = load_codec(codec_config, codec_checkpoint)
    (tmp / "ground_truth").mkdir(parents=True)
    (tmp / "codec").mkdir()
    results = []
    for utt_id in tqdm(selected, desc="score ground truth + codec", mininterval=5):
        row = rows[utt_id]
        sf.write(tmp / "ground_truth" / f"{utt_id}.wav", row["samples"], rate)
        results.append(_score_row("ground_truth", "ground_truth", row, row["samples"], rate, voices, cfg))
        with torch.inference_mode():
            resynth = codec.decode(torch.tensor([codes[utt_id]]))[0].numpy()
        sf.write(tmp / "codec" / f"{utt_id}.wav", resynth, codec.sample_rate)
        results.append(_score_row("codec", "codec", row, resynth, codec.sample_rate, voices, cfg))
    sanity = [u for u in selected if rows[u]["language"] == "en"
              and (not cfg.asr_voices or rows[u]["speaker"] in cfg.asr_voices)]
    noise = np.random.default_rng(0)
    for utt_id in sanity[:cfg.sanity_clips]:
        row, n = rows[utt_id], len(rows[utt_id]["samples"])
        results.append(_score_row("silence", "sanity", row, np.zeros(n, np.float32), rate, voices, cfg))
        results.append(_score_row("noise", "sanity", row, (0.1 * noise.standard_normal(n)).astype(np.float32),
                                  rate, voices, cfg))
    return results


def _reuse_baseline(baseline: Path, tmp: Path, selected: set[str]) -> list[dict]:
    """The baseline rows and WAVs of an earlier `codec_eval` run, so they are scored once per codec."""
    tmp.mkdir(parents=True)
    for folder in ("ground_truth", "codec"):
        shutil.copytree(baseline / folder, tmp / folder)
    table = pq.read_table(baseline / "utterances.parquet").to_pylist()
    return [{k: v for k, v in r.items() if v is not None} for r in table
            if r["system"] in BASELINE_SYSTEMS and r["utt_id"] in selected]


def evaluate(audio_shards: list[Path], codes_shards: list[Path], codec_config: Path, codec_checkpoint: Path,
             samples: dict[str, Path], out: Path, cfg: EvalConfig, baseline: Path | None = None) -> dict:
    if cfg.asr_model:
        log.info("scoring with the Whisper model in %s (languages %s)", cfg.asr_model,
                 asr.use_whisper_model(cfg.asr_model, cfg.asr_device, cfg.asr_compute_type, torch.get_num_threads()))
    rows, references, rate = _read_clips(audio_shards, cfg.voice_reference_clips)
    selected = _selected(rows, cfg)
    if not selected:
        raise ValueError("no evaluation utterances in the audio shards (split == 'eval')")
    voices = _Voices(references, rate)
    with atomic_output(out) as tmp:
        if baseline is not None:
            results = _reuse_baseline(baseline, tmp, set(selected))
        else:
            results = _score_baseline(rows, selected, codes_shards, codec_config, codec_checkpoint, rate, voices,
                                      cfg, tmp)
        for name, folder in samples.items():
            table = pq.read_table(folder / SAMPLES_FILE).to_pylist()
            for sample in tqdm(table, desc=f"score {name}", mininterval=5):
                if sample["utt_id"] not in selected:
                    continue
                audio, sample_rate = sf.read(folder / sample["path"], dtype="float32")
                system = name if sample["mode"] == "speaker" else f"{name}_zero_shot"
                scored = _score_row(system, "model", rows[sample["utt_id"]], audio, sample_rate, voices, cfg)
                scored.update(generation_seconds=sample["generation_seconds"], stop_reason=sample["stop_reason"],
                              rtf=sample["generation_seconds"] / max(sample["seconds"], 1e-9))
                results.append(scored)
        summary = _summary(results, cfg)
        columns = sorted({k for r in results for k in r}, key=lambda k: (k not in ("system", "utt_id"), k))
        pq.write_table(pa.Table.from_pylist([{c: r.get(c) for c in columns} for r in results]),
                       tmp / "utterances.parquet")
        (tmp / "metrics.json").write_text(json.dumps(summary, indent=2, ensure_ascii=False, default=float) + "\n")
    return summary


def _summary(results: list[dict], cfg: EvalConfig) -> dict:
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


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--audio", type=Path, nargs="+", required=True)
    parser.add_argument("--codes", type=Path, nargs="+", required=True)
    parser.add_argument("--codec-config", type=Path, required=True)
    parser.add_argument("--codec-checkpoint", type=Path, required=True)
    parser.add_argument("--samples", nargs="*", default=[], help="NAME=FOLDER of each model's synthesize output")
    parser.add_argument("--config-json", default="{}", help="the `eval` config section as JSON")
    parser.add_argument("--baseline", type=Path, help="a codec_eval output whose ground-truth/codec rows to reuse")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    torch.set_num_threads(args.threads)
    cfg = from_dict(EvalConfig, json.loads(args.config_json), "eval")
    samples = dict(item.split("=", 1) for item in args.samples)
    summary = evaluate(args.audio, args.codes, args.codec_config, args.codec_checkpoint,
                       {k: Path(v) for k, v in samples.items()}, args.out, cfg, args.baseline)
    for system, languages in summary["systems"].items():
        for language, stats in languages.items():
            shown = {k: round(v, 3) for k, v in stats.items() if k in ("wer", "cer", "ps_wer", "ps_cer", "stoi", "pesq",
                                                                     "speaker_sim",
                                                                     "speaker_sim_other", "dtw_log_mel", "rtf")}
            log.info("%-18s %s %s", system, language, shown)


if __name__ == "__main__":
    main()
