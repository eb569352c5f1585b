"""Stages `pretrain` and `sft`: train the LM with DeepSpeed on the codes shards; SFT starts from a pretrained model.

    torchrun --standalone --nproc_per_node 1 -m stages.train_lm --codes results/demo/codes/shard-*.parquet \
        --tokenizer results/demo/tokenizer --out-dir results/demo/pretrain/model \
        --checkpoint-dir results/demo/pretrain/checkpoints --section pretrain [--config-json '{"max_steps": 600}'] \
        [--threads 2]
    torchrun --standalone --nproc_per_node 1 -m stages.train_lm --codes results/demo/codes/shard-*.parquet \
        --tokenizer results/demo/tokenizer --out-dir results/demo/sft/model \
        --checkpoint-dir results/demo/sft/checkpoints --init-from results/demo/pretrain/model --section sft \
        --config-json '{"lr": 2e-4, "max_steps": 200, "speakers": ["rms"]}'

The first is pretraining; the second is SFT: the same trainer started from the pretrained model, on a
subset. `--section` names the config section the settings come from, so that an error says `sft.lr`
rather than `train.lr`. `--nproc_per_node N` trains on N GPUs (or N CPU processes); a bare
`python -m stages.train_lm ...` runs as one process. Rerunning the same command resumes from the newest
checkpoint in --checkpoint-dir (kept outside --out-dir, so a failed job leaves it for the next try; a
checkpoint of other settings or data is moved to <checkpoint-dir>.stale instead) and ends by writing
--out-dir: model.safetensors + config.json (loadable with stages.lm.export.load_model, no DeepSpeed
needed), the tokenizer's files, codec.json, train_config.json and metrics.jsonl.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Optional, Sequence

from stages.common.cli import config_section, start
from stages.config.pretrain import TrainConfig
from stages.train.loop import Trainer


def train_lm(codes: Sequence[Path], tokenizer: Path, out_dir: Path, checkpoint_dir: Path, config: TrainConfig,
             init_from: Optional[Path] = None, threads: Optional[int] = None, progress: bool = True,
             section: str = "train") -> Path:
    """Train (or resume training) and write the consolidated model to `out_dir`; returns `out_dir`.

    `section` is the config section `config` came from (pretrain, sft): errors about a setting name it.
    """
    trainer = Trainer(codes, tokenizer, checkpoint_dir, config, init_from=init_from, threads=threads,
                      progress=progress, section=section)
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
    parser.add_argument("--section", default="train", help="the config section they come from (pretrain, sft), "
                                                          "named in errors")
    parser.add_argument("--init-from", type=Path, help="model folder to start from (SFT)")
    parser.add_argument("--threads", type=int, help="CPU threads of the whole job on this node, shared out among "
                                                     "its processes (a rule's `threads`)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    # torchrun starts LOCAL_WORLD_SIZE processes on this node; each gets its share of the threads
    threads = max(1, args.threads // int(os.environ.get("LOCAL_WORLD_SIZE", "1"))) if args.threads else None
    start(threads)  # INFO logging on rank 0 only, WARNING on the others
    config = config_section(TrainConfig, args.config_json, args.section)
    train_lm(args.codes, args.tokenizer, args.out_dir, args.checkpoint_dir, config, init_from=args.init_from,
             threads=threads, progress=not args.no_progress, section=args.section)


if __name__ == "__main__":
    main()
