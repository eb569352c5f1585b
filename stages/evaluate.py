"""Stage `evaluate`: score every model's samples beside the ground truth and codec rows of `codec_eval`.

    python -m stages.evaluate --audio results/demo/audio/shard-*.parquet --baseline results/demo/codec_eval \
        --samples sft=results/demo/samples/sft pretrain=results/demo/samples/pretrain \
        --config-json '{}' --out results/demo/eval

The baseline rows (ground truth, codec, silence, noise) are scored once per codec by `codec_eval` and read
from its table; each model's samples (one system per model and mode: `sft`, `sft_zero_shot`, ...) are scored
here against the same held-out clips (stages.metrics.evaluation). These are offline proxies, not the paper
metrics (Whisper-large-v3 WER, WavLM similarity, UTMOS): see `stages.metrics` to plug those in.

Writes `utterances.parquet` (every system's rows, stages.common.tables.SCORES) and `metrics.json` (corpus
summaries per system and language). The WAVs stay where they are: in codec_eval's and synthesize's folders.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import soundfile as sf
from tqdm import tqdm

from stages.common.atomic import atomic_output
from stages.common.cli import config_section, named_paths, start
from stages.common.tables import (BASELINE_SYSTEMS, SAMPLES, SAMPLES_FILE, SCORES_FILE, read_scores, read_table,
                                  system_name)
from stages.config.eval import EvalConfig
from stages.metrics.evaluation import held_out, log_summary, score_row, write_results

log = logging.getLogger("evaluate")


def evaluate(audio_shards: list[Path], baseline: Path, samples: dict[str, Path], out: Path, cfg: EvalConfig) -> dict:
    """Score the samples; returns the summary of every system, baseline rows included, written to metrics.json."""
    rows, chosen, voices, _ = held_out(audio_shards, cfg, log)
    chosen = set(chosen)
    results = [r for r in read_scores(baseline / SCORES_FILE)
               if r["system"] in BASELINE_SYSTEMS and r["utt_id"] in chosen]
    for name, folder in samples.items():
        for sample in tqdm(read_table(folder / SAMPLES_FILE, SAMPLES).to_pylist(), desc=f"score {name}",
                           mininterval=5):
            if sample["utt_id"] not in chosen:
                continue
            audio, sample_rate = sf.read(folder / sample["path"], dtype="float32")
            scored = score_row(system_name(name, sample["mode"]), "model", rows[sample["utt_id"]], audio,
                               sample_rate, voices, cfg)
            scored.update(generation_seconds=sample["generation_seconds"], stop_reason=sample["stop_reason"],
                          rtf=sample["generation_seconds"] / max(sample["seconds"], 1e-9))
            results.append(scored)
    with atomic_output(out) as tmp:
        tmp.mkdir(parents=True)
        return write_results(results, cfg, tmp)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m stages.evaluate", description=__doc__.splitlines()[0])
    parser.add_argument("--audio", type=Path, nargs="+", required=True, help="audio shards (resample)")
    parser.add_argument("--baseline", type=Path, required=True, help="the codec_eval output folder")
    parser.add_argument("--samples", nargs="*", default=[], help="NAME=FOLDER of each model's synthesize output")
    parser.add_argument("--config-json", default="{}", help="the `eval` config section as JSON")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    start(threads=args.threads)
    cfg = config_section(EvalConfig, args.config_json, "eval")
    log_summary(evaluate(args.audio, args.baseline, named_paths(args.samples, "--samples"), args.out, cfg), log)


if __name__ == "__main__":
    main()
