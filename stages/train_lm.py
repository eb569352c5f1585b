"""Stages `pretrain` and `sft`: train the LM with DeepSpeed on the codes shards; SFT starts from a pretrained model.

    torchrun --standalone --nproc_per_node 1 -m stages.train_lm --codes results/demo/codes/shard-*.parquet \
        --tokenizer results/demo/tokenizer --out-dir results/demo/pretrain/model \
        --checkpoint-dir results/demo/pretrain/checkpoints [--config-json '{"max_steps": 600}'] [--threads 2]
    torchrun --standalone --nproc_per_node 1 -m stages.train_lm --codes results/demo/codes/shard-*.parquet \
        --tokenizer results/demo/tokenizer --out-dir results/demo/sft/model \
        --checkpoint-dir results/demo/sft/checkpoints --init-from results/demo/pretrain/model \
        --config-json '{"lr": 2e-4, "max_steps": 200, "speakers": ["rms"]}'

The first is pretraining; the second is SFT: the same trainer started from the pretrained model, on a
subset. `--nproc_per_node N` trains on N GPUs (or N CPU processes); a bare `python -m stages.train_lm ...`
runs as one process. Rerunning the same command resumes from the newest checkpoint in --checkpoint-dir
(kept outside --out-dir, so a failed job leaves it for the next try; a checkpoint of other settings or
data is moved to <checkpoint-dir>.stale instead) and ends by writing --out-dir: model.safetensors +
config.json (loadable with stages.lm.export.load_model, no DeepSpeed needed), the tokenizer's files,
codec.json, train_config.json and metrics.jsonl.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
from pathlib import Path
from typing import Optional, Sequence

from stages.config import from_dict
from stages.train.config import TrainConfig
from stages.train.loop import Trainer


def train_lm(codes: Sequence[Path], tokenizer: Path, out_dir: Path, checkpoint_dir: Path, config: TrainConfig,
             init_from: Optional[Path] = None, threads: Optional[int] = None, progress: bool = True) -> Path:
    """Train (or resume training) and write the consolidated model to `out_dir`; returns `out_dir`."""
    trainer = Trainer(codes, tokenizer, checkpoint_dir, config, init_from=init_from, threads=threads,
                      progress=progress)
    try:
        trainer.fit()
        return trainer.export(out_dir)
    finally:
        trainer.close()


def main(argv: Optional[list[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--codes", type=Path, nargs="+", required=True, help="codes shards (Parquet)")
    parser.add_argument("--tokenizer", type=Path, required=True, help="folder written by fit_tokenizer")
    parser.add_argument("--out-dir", type=Path, required=True, help="the consolidated model folder to write")
    parser.add_argument("--checkpoint-dir", type=Path, required=True, help="resumable DeepSpeed checkpoints")
    parser.add_argument("--config-json", default="{}", help="TrainConfig keys as JSON; unknown keys are an error")
    parser.add_argument("--init-from", type=Path, help="model folder to start from (SFT)")
    parser.add_argument("--threads", type=int, help="CPU threads of the whole job on this node, shared out among "
                                                     "its processes (a rule's `threads`)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    main_process = os.environ.get("RANK", "0") == "0"
    logging.basicConfig(level=logging.INFO if main_process else logging.WARNING,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    config = from_dict(TrainConfig, json.loads(args.config_json), "train")
    # torchrun starts LOCAL_WORLD_SIZE processes on this node; each gets its share of the threads
    threads = max(1, args.threads // int(os.environ.get("LOCAL_WORLD_SIZE", "1"))) if args.threads else None
    train_lm(args.codes, args.tokenizer, args.out_dir, args.checkpoint_dir, config, init_from=args.init_from,
             threads=threads, progress=not args.no_progress)


if __name__ == "__main__":
    main()
