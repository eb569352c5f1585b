"""A measured LM sweep: pretrain each setting on a finished run's codes, speak held-out sentences, score them.

    python scripts/lm_sweep.py --run results/demo --codec assets/codec/demo-75hz --out results/sweep \
        --point tiny-1000='{"model": "tiny", "max_steps": 1000}' \
        --point small-500='{"model": "small", "max_steps": 500}' --per-voice 4 --threads 2

Each point is a pretrain config (TrainConfig keys over the defaults) trained with the pipeline's own
trainer (`stages.train_lm`), resumable like the stage. Its model then speaks `--per-voice` held-out
English sentences per voice with the speaker token, and Whisper tiny.en scores them. The table gives, per
point: minutes of training, tokens/s, final validation loss, WER, CER and the share of clips that ended at
EOS. Points run one after another, so their minutes are comparable on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import pyarrow.parquet as pq
import soundfile as sf

from stages.config import from_dict
from stages.config.eval import SynthesisConfig
from stages.metrics import Sample, score, summarize
from stages.common.tables import SAMPLES_FILE
from stages.synthesize import synthesize
from stages.config.pretrain import TrainConfig
from stages.train_lm import train_lm


def last_metrics(model_dir: Path) -> dict:
    """The last validation loss and the mean tokens/s of a trained model's metrics.jsonl."""
    rows = [json.loads(line) for line in (model_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    valid = [r for r in rows if r["kind"] == "val"]
    speeds = [r["tokens_per_s"] for r in rows if r["kind"] == "train"]
    return {"valid_loss": valid[-1]["loss"] if valid else float("nan"),
            "tokens_per_second": sum(speeds) / len(speeds) if speeds else float("nan")}


def score_samples(folder: Path) -> dict:
    table = pq.read_table(folder / SAMPLES_FILE).to_pylist()
    rows = []
    for sample in table:
        audio, rate = sf.read(folder / sample["path"], dtype="float32")
        rows.append(score(Sample.make(audio, rate, sample["text"], "en"), ["asr"]))
    summary = summarize(rows)
    return {"wer": summary["wer"], "cer": summary["cer"], "clips": len(rows),
            "stopped_by_eos": sum(s["stop_reason"] == "eos" for s in table) / max(1, len(table))}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, required=True, help="a finished run folder (codes/, tokenizer/)")
    parser.add_argument("--codec", type=Path, required=True, help="codec path without suffix (.yaml, .ckpt)")
    parser.add_argument("--point", action="append", required=True, help="NAME=JSON of pretrain config keys")
    parser.add_argument("--voices", nargs="+", default=["awb", "rms", "slt", "kal16"])
    parser.add_argument("--per-voice", type=int, default=4)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    codes = sorted((args.run / "codes").glob("shard-*.parquet"))
    results = []
    for point in args.point:
        name, _, values = point.partition("=")
        config = from_dict(TrainConfig, json.loads(values), f"point {name}")
        folder = args.out / name
        started = time.perf_counter()
        train_lm(codes, args.run / "tokenizer", folder / "model", folder / "checkpoints", config,
                 threads=args.threads, progress=False)
        minutes = (time.perf_counter() - started) / 60
        samples = folder / "samples"
        if not samples.exists():
            synthesize(folder / "model", args.codec.with_suffix(".yaml"), args.codec.with_suffix(".ckpt"), codes,
                       samples, SynthesisConfig(voices=tuple(args.voices), sentences_per_voice=args.per_voice,
                                                zero_shot=False))
        row = {"point": name, "config": json.loads(values), "train_minutes": round(minutes, 1),
               **last_metrics(folder / "model"), **score_samples(samples)}
        results.append(row)
        print(json.dumps(row), flush=True)
    (args.out / "sweep.json").write_text(json.dumps(results, indent=2) + "\n")
    print(f"{'point':16} {'min':>6} {'tok/s':>7} {'val loss':>8} {'WER':>6} {'CER':>6} {'EOS':>5}")
    for r in results:
        print(f"{r['point']:16} {r['train_minutes']:>6} {r['tokens_per_second']:>7.0f} {r['valid_loss']:>8.3f} "
              f"{r['wer']:>6.1%} {r['cer']:>6.1%} {r['stopped_by_eos']:>5.0%}")


if __name__ == "__main__":
    main()
