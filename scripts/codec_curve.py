"""The codec's held-out quality against training time: STOI and Whisper WER/CER of each snapshot's resynthesis.

    python scripts/codec_curve.py results/demo_from_scratch/audio/shard-*.parquet \
        --codec results/demo_from_scratch/codec --per-voice 10 --out results/demo_from_scratch/codec_curve.json

`--codec` is a `train_codec` output folder: every `snapshots/step-*.ckpt` (written every `snapshot_every`
steps) and the final `codec.ckpt` are scored on the same held-out English utterances (split `eval`, never
trained on), next to the ground truth. Minutes are steps times the run's measured seconds per step
(`codec.metrics.json`), so a resumed run still gets a time axis in CPU-minutes of training.
"""

from __future__ import annotations

import argparse
import json
import re
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

from stages.common.audio import decode_flac
from stages.codec import load_codec
from stages.metrics import Sample, score, summarize
from stages.common.tables import AUDIO_SHARD, read_table


def held_out(shards: list[Path], per_voice: int) -> list[dict]:
    per = defaultdict(list)
    for path in shards:
        for row in read_table(path, AUDIO_SHARD).to_pylist():
            if row["split"] == "eval" and row["language"] == "en":
                per[row["speaker"]].append(row)
    chosen = [r for voice in sorted(per) for r in sorted(per[voice], key=lambda r: r["utt_id"])[:per_voice]]
    for row in chosen:
        row["samples"], row["rate"] = decode_flac(row["audio"])
    return chosen


def scores(rows: list[dict], audio_of, metrics: list[str]) -> dict:
    scored = []
    for row in rows:
        audio, rate = audio_of(row)
        sample = Sample.make(audio, rate, row["text"], "en", reference=row["samples"], reference_rate=row["rate"])
        scored.append(score(sample, metrics))
    summary = summarize(scored)
    return {k: summary[k] for k in ("wer", "cer", "stoi") if k in summary} | {"clips": len(scored)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("shards", type=Path, nargs="+", help="audio shards of the run (resample output)")
    parser.add_argument("--codec", type=Path, required=True, help="the train_codec output folder")
    parser.add_argument("--per-voice", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    rows = held_out(args.shards, args.per_voice)
    metrics = json.loads((args.codec / "codec.metrics.json").read_text())
    seconds_per_step = 1 / metrics["steps_per_second_this_run"]
    checkpoints = sorted((args.codec / "snapshots").glob("step-*.ckpt")) + [args.codec / "codec.ckpt"]
    curve = [{"system": "ground_truth", **scores(rows, lambda r: (r["samples"], r["rate"]), ["asr"])}]
    print(json.dumps(curve[0]))
    for ckpt in checkpoints:
        codec = load_codec(ckpt.with_suffix(".yaml"), ckpt)
        step = int(re.search(r"\d+", ckpt.stem).group()) if ckpt.stem.startswith("step-") else metrics["steps"]

        def resynthesis(row, codec=codec):
            with torch.inference_mode():
                wav = torch.from_numpy(np.asarray(row["samples"], dtype=np.float32))[None]
                codes, _ = codec.encode(wav)
                return codec.decode(codes)[0, : wav.shape[1]].numpy(), codec.sample_rate

        point = {"system": "codec", "step": step, "cpu_minutes": round(step * seconds_per_step / 60, 1),
                 **scores(rows, resynthesis, ["asr", "stoi"])}
        curve.append(point)
        print(json.dumps(point))
    args.out.write_text(json.dumps({"seconds_per_step": seconds_per_step, "curve": curve}, indent=2) + "\n")


if __name__ == "__main__":
    main()
