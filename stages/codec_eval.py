"""Stage `codec_eval`: score the ground truth and its codec resynthesis once per codec, the ceiling for every model.

    python -m stages.codec_eval --audio results/demo/audio/shard-*.parquet \
        --codes results/demo/codes/shard-*.parquet --codec-config assets/codec/demo-75hz.yaml \
        --codec-checkpoint assets/codec/demo-75hz.ckpt --config-json '{}' --out results/demo/codec_eval

Rows: `ground_truth` (the corpus audio), `codec` (its codes decoded) and the sanity rows `silence` and `noise`,
which must score WER 100% (stages.metrics.evaluation). Writes `utterances.parquet` (stages.common.tables.SCORES),
`metrics.json` (the same summaries evaluate writes) and the folders `ground_truth/` and `codec/` of WAVs that
the report plays. It never runs the LM, so editing the LM does not rerun it.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from tqdm import tqdm

from stages.codec import load_codec
from stages.common.atomic import atomic_output
from stages.common.cli import config_section, start
from stages.common.tables import BASELINE_AUDIO, CODES, read_table
from stages.config.eval import EvalConfig
from stages.metrics.evaluation import held_out, log_summary, score_row, write_results

log = logging.getLogger("codec_eval")


def codec_eval(audio_shards: list[Path], codes_shards: list[Path], codec_config: Path, codec_checkpoint: Path,
               out: Path, cfg: EvalConfig) -> dict:
    """Score ground truth, codec resynthesis and the sanity rows; returns the summary written to metrics.json."""
    rows, chosen, voices, rate = held_out(audio_shards, cfg, log)
    codes = {r["utt_id"]: r["codes"] for p in codes_shards for r in read_table(p, CODES).to_pylist()
             if r["utt_id"] in rows}
    codec = load_codec(codec_config, codec_checkpoint)
    results = []
    with atomic_output(out) as tmp:
        for folder in BASELINE_AUDIO:
            (tmp / folder).mkdir(parents=True)
        for utt_id in tqdm(chosen, desc="score ground truth + codec", mininterval=5):
            row = rows[utt_id]
            sf.write(tmp / "ground_truth" / f"{utt_id}.wav", row["samples"], rate)
            results.append(score_row("ground_truth", "ground_truth", row, row["samples"], rate, voices, cfg))
            with torch.inference_mode():
                resynth = codec.decode(torch.tensor([codes[utt_id]]))[0].numpy()
            sf.write(tmp / "codec" / f"{utt_id}.wav", resynth, codec.sample_rate)
            results.append(score_row("codec", "codec", row, resynth, codec.sample_rate, voices, cfg))
        sanity = [u for u in chosen if rows[u]["language"] == "en"
                  and (not cfg.asr_voices or rows[u]["speaker"] in cfg.asr_voices)]
        noise = np.random.default_rng(0)
        for utt_id in sanity[:cfg.sanity_clips]:
            row, n = rows[utt_id], len(rows[utt_id]["samples"])
            results.append(score_row("silence", "sanity", row, np.zeros(n, np.float32), rate, voices, cfg))
            results.append(score_row("noise", "sanity", row, (0.1 * noise.standard_normal(n)).astype(np.float32),
                                     rate, voices, cfg))
        return write_results(results, cfg, tmp)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m stages.codec_eval", description=__doc__.splitlines()[0])
    parser.add_argument("--audio", type=Path, nargs="+", required=True, help="audio shards (resample)")
    parser.add_argument("--codes", type=Path, nargs="+", required=True, help="codes shards (extract_codes)")
    parser.add_argument("--codec-config", type=Path, required=True)
    parser.add_argument("--codec-checkpoint", type=Path, required=True)
    parser.add_argument("--config-json", default="{}", help="the `eval` config section as JSON")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    start(threads=args.threads)
    cfg = config_section(EvalConfig, args.config_json, "eval")
    log_summary(codec_eval(args.audio, args.codes, args.codec_config, args.codec_checkpoint, args.out, cfg), log)


if __name__ == "__main__":
    main()
