"""Benchmark: the trainer's step fed by its real data loader against the same batches built beforehand.

    .venv/bin/python benchmarks/bench_loader.py [--preset tiny] [--steps 24] [--rounds 3] [--threads 2]

Writes demo-like codes shards (4-9 s utterances at 75 codes/s) and a tokenizer into a temporary folder, builds
the stage's own `Trainer` on them (one-process group, DeepSpeed ZeRO-2, the CPU or the GPU) and times its
`train_step` three ways, on the same sequence of batches:
  prebuilt   - every batch read and padded before the clock starts: the step alone, the ceiling;
  prefetched - the loader as `fit` runs it: TrainBatches.stream in a background thread (prefetch.py);
  serial     - the same stream on the main thread, between steps, as the trainer did before.
The variants take turns, a block of `--steps` steps each per round, so load from other jobs falls on all alike;
the first steps of a block are not timed (the thread's queue is full at a block's start). Prints each
variant's median step time and tokens/s, and prebuilt / prefetched (issue 13's goal: >= 0.97).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from itertools import islice
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(ROOT / "tests"))
from machine import describe  # noqa: E402
from train_corpus import fit_tiny_tokenizer, utterances, write_shards  # noqa: E402  (the training tests' corpus)

from stages.config import from_dict  # noqa: E402
from stages.config.pretrain import TrainConfig  # noqa: E402
from stages.train.loop import Trainer  # noqa: E402
from stages.train.prefetch import Prefetched  # noqa: E402

GOAL = 0.97
UNTIMED_PER_BLOCK = 2


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed_block(trainer: Trainer, batches, steps: int) -> tuple[float, int]:
    """Seconds and real tokens of `steps` steps after UNTIMED_PER_BLOCK untimed ones, taking batches from `batches`."""
    device = trainer.dist.device
    for batch, _ in islice(batches, UNTIMED_PER_BLOCK):
        trainer.train_step([batch])
    synchronize(device)
    started, tokens = time.perf_counter(), 0
    for batch, _ in islice(batches, steps):
        tokens += trainer.train_step([batch]).real_tokens
    synchronize(device)
    return time.perf_counter() - started, tokens


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="tiny", help="configs/model/<preset>.yaml")
    parser.add_argument("--steps", type=int, default=24, help="timed steps per block")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--utterances", type=int, default=600)
    parser.add_argument("--batch-tokens", type=int, default=6000)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own)")
    parser.add_argument("--precision", default="auto", choices=("auto", "bf16", "fp32"))
    args = parser.parse_args(argv)

    block = args.steps + UNTIMED_PER_BLOCK
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        codes = write_shards(root / "codes", utterances(args.utterances, frames=(6, 12), valid_every=1000),
                             n_shards=4, row_group_size=64)
        config = from_dict(TrainConfig, {"model": args.preset, "batch_tokens": args.batch_tokens,
                                         "precision": args.precision, "max_steps": 100_000, "warmup_steps": 10})
        trainer = Trainer(codes, fit_tiny_tokenizer(root), root / "checkpoints", config, threads=args.threads,
                          progress=False)
        n_batches = args.rounds * block
        prebuilt = list(islice(trainer.data.stream(), n_batches))
        started = time.perf_counter()
        list(islice(trainer.data.stream(), n_batches))
        build_ms = (time.perf_counter() - started) / n_batches * 1e3

        pin = trainer.dist.device.type == "cuda"
        sources = {"prebuilt": iter(prebuilt), "prefetched": Prefetched(trainer.data.stream(), pin_memory=pin),
                   "serial": trainer.data.stream()}
        seconds = {name: [] for name in sources}
        tokens = {name: 0 for name in sources}
        for _ in range(args.rounds):
            for name, source in sources.items():
                spent, n = timed_block(trainer, source, args.steps)
                seconds[name].append(spent / args.steps)
                tokens[name] += n
        sources["prefetched"].close()

    print(f"machine: {describe()}")
    print(f"trainer: {args.preset} on {trainer.dist.device} ({trainer.precision}), batch_tokens {args.batch_tokens}, "
          f"{len(trainer.data)} batches per epoch; building one batch on its own: {build_ms:.1f} ms")
    print(f"{args.rounds} rounds x {args.steps} timed steps per variant (medians of the rounds):")
    median = {name: statistics.median(values) for name, values in seconds.items()}
    for name, step_s in median.items():
        total = sum(seconds[name]) * args.steps
        print(f"  {name:<10} {step_s * 1e3:8.1f} ms/step  {tokens[name] / total:9.0f} tokens/s")
    ratio = median["prebuilt"] / median["prefetched"]
    print(f"prebuilt / prefetched step time: {ratio:.3f} (goal >= {GOAL}: {'met' if ratio >= GOAL else 'MISSED'})")
    print(f"prebuilt / serial step time:     {median['prebuilt'] / median['serial']:.3f} (the loader before)")


if __name__ == "__main__":
    main()
