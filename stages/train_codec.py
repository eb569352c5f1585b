"""Stage `train_codec`: train a WavTokenizer codec on the audio shards, when no official weights are at hand.

    python -m stages.train_codec results/demo/audio/shard-*.parquet --out-checkpoint results/demo/codec/codec.ckpt \
        --out-config results/demo/codec/codec.yaml --out-metrics results/demo/codec/codec.metrics.json \
        [--config codec_train.yaml | --config-json '{"steps": 2600}'] [--threads N] [--device cpu|cuda]

The checkpoint and YAML are in the official layout (our loader and the official code load them); the
metrics file is written last. Beside the checkpoint go `state.pt` (everything needed to resume: weights,
optimisers, step, the CPU's and the GPU's RNG states, the precision trained in), `tensorboard/`,
`audio_cache/` (the training clips as one int16 file read crop by crop, stages/codec/clip_cache.py: memory
stays flat however large the corpus) and, every `snapshot_every`
steps, `snapshots/step-N` (the same two files, for scripts/codec_curve.py). Rerunning the command resumes from `state.pt`. The objective
and the step itself are stages/codec/trainer.py.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import yaml

from stages.codec.clip_cache import cached_clips
from stages.codec.trainer import CodecTrainer
from stages.config.codec import CodecTrainConfig
from stages.common.atomic import atomic_output
from stages.common.devices import job_device
from stages.common.cli import config_section, start
from stages.config import from_dict

log = logging.getLogger(__name__)


def train_codec(train_clips: Sequence[np.ndarray], valid_clips: Sequence[np.ndarray], checkpoint: Path,
                codec_yaml: Path, metrics_file: Path, config: CodecTrainConfig, device: str = "cpu",
                progress: bool = True) -> dict[str, float]:
    """Train (or resume) a codec and write its checkpoint, YAML and metrics; returns the metrics.

    The resumable state, TensorBoard logs and snapshots live in the checkpoint's folder.
    """
    from torch.utils.tensorboard import SummaryWriter
    from tqdm import tqdm

    if not train_clips:
        raise ValueError("train_codec: no training audio")
    checkpoint, codec_yaml, metrics_file = Path(checkpoint), Path(codec_yaml), Path(metrics_file)
    work_dir = checkpoint.parent
    work_dir.mkdir(parents=True, exist_ok=True)
    trainer = CodecTrainer(config, torch.device(device))
    log.info("training on %s in %s, critics %s", device, trainer.precision, ", ".join(config.critics))
    state_path = work_dir / "state.pt"
    if state_path.exists():
        trainer.resume(state_path)
        log.info("resumed from %s: step %d of %d", state_path, trainer.step, config.steps)
    writer = SummaryWriter(str(work_dir / "tensorboard"), purge_step=trainer.step)
    started, first_step = time.monotonic(), trainer.step
    bar = tqdm(total=config.steps, initial=trainer.step, disable=not progress, desc="train_codec", unit="step")
    while trainer.step < config.steps:
        logs = trainer.train_step(train_clips)
        bar.update(1)
        bar.set_postfix(mel=f"{logs['generator/mel_l1']:.3f}", codes=int(logs.get("codebook/codes_in_batch", 0)))
        if trainer.step % config.log_every == 0:
            for key, value in logs.items():
                writer.add_scalar(key, value, trainer.step)
        if config.snapshot_every and trainer.step % config.snapshot_every == 0:
            snapshot = work_dir / "snapshots" / f"step-{trainer.step:06d}"
            trainer.export(snapshot.with_suffix(checkpoint.suffix), snapshot.with_suffix(codec_yaml.suffix))
        if trainer.step % config.checkpoint_every == 0 or trainer.step == config.steps:
            trainer.save(state_path)
    bar.close()
    metrics = {"steps": trainer.step, "seconds_this_run": time.monotonic() - started,
               "steps_per_second_this_run": (trainer.step - first_step) / max(1e-9, time.monotonic() - started),
               **trainer.evaluate(valid_clips or train_clips)}
    for key in ("valid/mel_l1", "valid/codes_used"):
        writer.add_scalar(key, metrics[key], trainer.step)
    writer.close()
    trainer.export(checkpoint, codec_yaml)
    with atomic_output(metrics_file) as tmp:
        tmp.write_text(json.dumps(metrics, indent=2) + "\n")
    return metrics


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m stages.train_codec", description=__doc__.split("\n\n")[0])
    parser.add_argument("shards", type=Path, nargs="+", help="audio shards written by the resample stage")
    parser.add_argument("--out-checkpoint", type=Path, required=True, help="the codec checkpoint to write (.ckpt)")
    parser.add_argument("--out-config", type=Path, required=True, help="the codec's official YAML to write")
    parser.add_argument("--out-metrics", type=Path, required=True, help="the final metrics to write (JSON)")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--config", type=Path, help="YAML file: a mapping of CodecTrainConfig keys")
    source.add_argument("--config-json", help="the same mapping as a JSON string (what the Snakemake rule passes)")
    parser.add_argument("--threads", type=int, default=0, help="CPU threads for torch (0: torch's default)")
    parser.add_argument("--device", default="auto", help="auto (a GPU when usable; required when the job was "
                        "given GPUs), cpu, cuda, cuda:1, ...")
    args = parser.parse_args(argv)
    start(threads=args.threads)
    if args.config:
        config = from_dict(CodecTrainConfig, yaml.safe_load(args.config.read_text()), str(args.config))
    else:
        config = config_section(CodecTrainConfig, args.config_json or "{}", "codec.train")
    train, valid = cached_clips(args.shards, args.out_checkpoint.parent / "audio_cache")
    metrics = train_codec(train, valid, args.out_checkpoint, args.out_config, args.out_metrics, config,
                          job_device(args.device))
    print(json.dumps(metrics, indent=2))


if __name__ == "__main__":
    main()
