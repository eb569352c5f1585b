"""DeepSpeed checkpoints that survive a SIGKILL at any moment, and their consolidation into plain weights.

    python -m stages.train.checkpoint results/demo/pretrain/checkpoints     # list checkpoints and the latest

A checkpoint folder holds one DeepSpeed tag per save (`step00000100/`, ...) and `latest`, naming the
newest complete one. `latest` is replaced atomically only after every process has finished writing its
files, so a run killed while saving resumes from the previous checkpoint; the half-written folder is
removed on restart. Each checkpoint's client state carries what DeepSpeed does not save: the data
position, the token count and every process's RNG states.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import sys
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch

LATEST = "latest"
BEST = "best"    # JSON {"tag", "loss"}: the checkpoint of the lowest validation loss (export: best)
TAG = re.compile(r"^step(\d{8})$")


def tag_of(step: int) -> str:
    return f"step{step:08d}"


def tags(directory: Path) -> list[tuple[int, str]]:
    """(step, tag) of every checkpoint folder, oldest first (complete or not)."""
    if not directory.is_dir():
        return []
    found = [(int(m.group(1)), p.name) for p in directory.iterdir() if p.is_dir() and (m := TAG.match(p.name))]
    return sorted(found)


def latest_tag(directory: Path) -> Optional[str]:
    """The newest complete checkpoint, or None when nothing was saved yet."""
    path = Path(directory) / LATEST
    if not path.exists():
        return None
    tag = path.read_text().strip()
    if not TAG.match(tag) or not (Path(directory) / tag).is_dir():
        raise FileNotFoundError(f"{path} names {tag!r}, which is not a checkpoint folder in {directory}; "
                                f"delete {directory} to train from scratch")
    return tag


def remove_unfinished(directory: Path) -> list[str]:
    """Delete checkpoint folders newer than `latest`: a killed save left them half-written."""
    directory = Path(directory)
    latest = latest_tag(directory)
    newest = int(TAG.match(latest).group(1)) if latest else -1
    removed = [tag for step, tag in tags(directory) if step > newest]
    for tag in removed:
        shutil.rmtree(directory / tag)
    return removed


def _replace(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)


def write_latest(directory: Path, tag: str) -> None:
    _replace(Path(directory) / LATEST, tag)


def write_best(directory: Path, tag: str, loss: float) -> None:
    """Point `best` at the checkpoint with the lowest validation loss so far (`export: best` exports it)."""
    _replace(Path(directory) / BEST, json.dumps({"tag": tag, "loss": loss}) + "\n")


def best(directory: Path) -> Optional[dict]:
    """{"tag", "loss"} of the best-validated checkpoint, or None when none was marked (or it is gone)."""
    path = Path(directory) / BEST
    if not path.exists():
        return None
    found = json.loads(path.read_text())
    return found if (Path(directory) / found["tag"]).is_dir() else None


def prune(directory: Path, keep: int) -> list[str]:
    """Delete all but the `keep` newest complete checkpoints, and the best-validated one."""
    latest = latest_tag(Path(directory))
    marked = best(Path(directory))
    complete = [tag for step, tag in tags(Path(directory)) if latest and step <= int(TAG.match(latest).group(1))]
    removed = [tag for tag in (complete[:-keep] if keep > 0 else []) if not marked or tag != marked["tag"]]
    for tag in removed:
        shutil.rmtree(Path(directory) / tag)
    return removed


def save(engine: Any, directory: Path, step: int, client_state: dict, keep: int, is_main: bool) -> str:
    """Save a checkpoint on every process, then (main process) point `latest` at it and prune old ones."""
    tag = tag_of(step)
    # save_latest=False: DeepSpeed writes `latest` by truncate-then-write; we replace it atomically instead
    engine.save_checkpoint(str(directory), tag=tag, client_state=client_state, save_latest=False)
    if is_main:  # save_checkpoint ended on a barrier: every process's files are on disk
        write_latest(Path(directory), tag)
        prune(Path(directory), keep)
    torch.distributed.barrier()
    return tag


def rng_states() -> dict:
    return {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []}


def set_rng_states(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def consolidated_state_dict(directory: Path, tag: str) -> dict[str, torch.Tensor]:
    """fp32 weights of a ZeRO 1-3 checkpoint, gathered by DeepSpeed's own zero_to_fp32 (no engine needed)."""
    from deepspeed.utils.zero_to_fp32 import get_fp32_state_dict_from_zero_checkpoint

    return get_fp32_state_dict_from_zero_checkpoint(str(directory), tag=tag)


def main(argv: Optional[list[str]] = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        raise SystemExit("usage: python -m stages.train.checkpoint CHECKPOINT_DIR")
    directory = Path(argv[0])
    latest = latest_tag(directory)
    for step, tag in tags(directory):
        print(f"{tag}  step {step}{'  (latest)' if tag == latest else ''}")
    if latest is None:
        print(f"{directory}: no complete checkpoint")


if __name__ == "__main__":
    main()
