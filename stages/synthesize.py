"""Stage `synthesize`: speak every held-out evaluation sentence with a trained model, for scoring.

    python -m stages.synthesize --model results/demo/sft/model --codec-config results/demo/codec/codec.yaml \
        --codec-checkpoint results/demo/codec/codec.ckpt --codes results/demo/codes/shard-*.parquet \
        --config-json '{"seed": 0}' --out results/demo/samples/sft

For each utterance of the `eval` split (never trained on) the model speaks the sentence in the same
voice, by its speaker token. With `zero_shot` on, each English sentence is also spoken by voice-prompt
continuation: the prompt is a training utterance of that voice (its transcript and codes), and the
model gets no speaker token. Output: one WAV per sample and `samples.parquet` (utt_id, text, voice,
mode, seconds, generation seconds, stop reason), written atomically as one folder.
"""

from __future__ import annotations

import argparse
import logging
import time
from collections import defaultdict
from pathlib import Path

import soundfile as sf
from tqdm import tqdm

from stages.common.atomic import atomic_output
from stages.common.devices import job_device
from stages.common.cli import config_section, start
from stages.common.tables import CODES, SAMPLES, SAMPLES_FILE, read_table, write_table
from stages.config.eval import SynthesisConfig
from stages.runtime import Synthesizer

log = logging.getLogger("synthesize")

def _eval_rows(codes: list[Path], cfg: SynthesisConfig) -> tuple[list[dict], dict[str, dict]]:
    """Evaluation utterances to speak, and per voice the prompt: its shortest train utterance of >= 2 s."""
    eval_rows, prompts = defaultdict(list), {}
    for path in codes:
        table = read_table(path, CODES)
        frame_rate = float(table.schema.metadata[b"frame_rate"])
        for row in table.to_pylist():
            if row["split"] == "eval" and (not cfg.voices or row["speaker"] in cfg.voices):
                eval_rows[row["speaker"]].append(row)
            elif row["split"] == "train" and row["n_frames"] >= 2 * frame_rate:
                best = prompts.get(row["speaker"])
                if best is None or (row["n_frames"], row["utt_id"]) < (best["n_frames"], best["utt_id"]):
                    prompts[row["speaker"]] = row
    chosen = [r for voice in sorted(eval_rows)
              for r in sorted(eval_rows[voice], key=lambda r: r["utt_id"])[:cfg.sentences_per_voice]]
    return chosen, prompts


def synthesize(model_dir: Path, codec_config: Path, codec_checkpoint: Path, codes: list[Path], out: Path,
               cfg: SynthesisConfig, device: str = "cpu") -> int:
    overrides = {"seed": cfg.seed, **{key: getattr(cfg, key) for key in ("temperature", "ras_window", "ras_tau")
                                      if getattr(cfg, key) is not None}}
    tts = Synthesizer(model_dir, codec_config, codec_checkpoint, device, **overrides)
    rows, prompts = _eval_rows(codes, cfg)
    if not rows:
        raise ValueError("no evaluation utterances found in the codes tables (split == 'eval')")
    known = set(tts.vocab.speakers)
    jobs = []  # (sample_id, row, mode, request, prompt row)
    for row in rows:
        speaker = row["speaker"] if row["speaker"] in known else None
        jobs.append((f"{row['utt_id']}", row, "speaker", tts.request(row["text"], row["language"], speaker), None))
        prompt = prompts.get(row["speaker"])
        if cfg.zero_shot and row["language"] == "en" and prompt is not None:
            request = tts.request(row["text"], row["language"], None, prompt["text"], prompt["codes"])
            jobs.append((f"prompt_{row['utt_id']}", row, "prompt", request, prompt))
    log.info("%d samples for %d evaluation utterances (%d voices)", len(jobs), len(rows),
             len({r["speaker"] for r in rows}))
    records = []
    with atomic_output(out) as tmp:
        tmp.mkdir(parents=True)
        for first in tqdm(range(0, len(jobs), cfg.batch_size), desc="synthesize", mininterval=5):
            batch = jobs[first:first + cfg.batch_size]
            began = time.perf_counter()
            spoken = tts.speak([job[3] for job in batch])
            took = time.perf_counter() - began
            total = sum(len(s.audio) for s in spoken)
            for (sample_id, row, mode, _, prompt), said in zip(batch, spoken):
                wav = said.audio
                sf.write(tmp / f"{sample_id}.wav", wav, tts.codec.sample_rate)
                records.append({
                    "sample_id": sample_id, "utt_id": row["utt_id"], "text": row["text"], "language": row["language"],
                    "voice": row["speaker"], "mode": mode, "prompt_utt_id": prompt["utt_id"] if prompt else "",
                    "path": f"{sample_id}.wav", "seconds": len(wav) / tts.codec.sample_rate,
                    # batch time shared by audio length: the sample's part of the work
                    "generation_seconds": took * len(wav) / max(total, 1), "stop_reason": said.generated.stop_reason})
        write_table(records, SAMPLES, tmp / SAMPLES_FILE)
    stops = defaultdict(int)
    for r in records:
        stops[r["stop_reason"]] += 1
    seconds = sum(r["seconds"] for r in records)
    log.info("%d samples, %.1f s of audio, RTF %.3f, stop reasons %s", len(records), seconds,
             sum(r["generation_seconds"] for r in records) / max(seconds, 1e-9), dict(stops))
    return len(records)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--codec-config", type=Path, required=True)
    parser.add_argument("--codec-checkpoint", type=Path, required=True)
    parser.add_argument("--codes", type=Path, nargs="+", required=True)
    parser.add_argument("--config-json", default="{}", help="the `eval.synthesis` config section as JSON")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="auto", help="auto (a GPU when usable; required when the job was "
                        "given GPUs), cpu, cuda, cuda:1, ...")
    args = parser.parse_args(argv)
    start(threads=args.threads)
    cfg = config_section(SynthesisConfig, args.config_json, "eval.synthesis")
    synthesize(args.model, args.codec_config, args.codec_checkpoint, args.codes, args.out, cfg,
               job_device(args.device))


if __name__ == "__main__":
    main()
