"""DeepSpeed checkpoints that survive a SIGKILL at any moment, and their consolidation into plain weights.

    python -m stages.train.checkpoint results/demo/pretrain/checkpoints     # list checkpoints and the latest

A checkpoint folder holds one DeepSpeed tag per save (`step00000100/`, ...) and `latest`, naming the
newest complete one. `latest` is replaced atomically only after every process has finished writing its
files, so a run killed while saving resumes from the previous checkpoint; the half-written folder is
removed on restart. Each checkpoint's client state carries what DeepSpeed does not save: the data
position, the token count and every process's RNG states.

ZeRO shards the optimizer state (and with ZeRO-3 the weights) by process, and DeepSpeed loads the shards only
at the world size that wrote them. `to_universal` re-lays a checkpoint out as DeepSpeed's universal
checkpoint (each parameter's fp32 weights and Adam moments whole, in `universal/<tag>`), which an engine of
any world size loads; resume.py does so when a run resumes with another number of processes, and the export
does so for the shards of DeepSpeed's BF16 optimizer (bf16 with ZeRO-1), which zero_to_fp32 cannot read.
"""

from __future__ import annotations

import argparse
import contextlib
import io
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
UNIVERSAL = "universal"   # <dir>/universal/<tag>: a checkpoint re-laid out for another world size, while it loads
SHARD = re.compile(r"^(?:bf16_)?zero_pp_rank_(\d+)_mp_rank_\d+_optim_states\.pt$")  # one per process


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
    """Delete checkpoint folders newer than `latest` (a killed save left them half-written) and a universal
    conversion (a run killed while resuming with another world size left it)."""
    directory = Path(directory)
    latest = latest_tag(directory)
    newest = int(TAG.match(latest).group(1)) if latest else -1
    removed = [tag for step, tag in tags(directory) if step > newest]
    if (directory / UNIVERSAL).is_dir():
        removed.append(UNIVERSAL)
    for name in removed:
        shutil.rmtree(directory / name)
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


def saved_world_size(directory: Path, tag: str) -> int:
    """How many processes saved checkpoint `tag`: each wrote its own ZeRO optimizer shard."""
    folder = Path(directory) / tag
    ranks = {int(m.group(1)) for p in folder.iterdir() if (m := SHARD.match(p.name))} if folder.is_dir() else set()
    if not ranks or ranks != set(range(len(ranks))):
        raise FileNotFoundError(f"{folder}: ZeRO optimizer shards of processes {sorted(ranks)}, not of 0..N-1: the "
                                f"checkpoint is incomplete; restore its files, or delete {directory} to train from "
                                "scratch")
    return len(ranks)


def to_universal(directory: Path, tag: str) -> Path:
    """Convert checkpoint `tag` into DeepSpeed's universal layout, in `<directory>/universal/<tag>`; returns the
    folder to load it from (`universal`). Any earlier conversion there (a killed one) is replaced.

    The fp32 weights and every optimizer state of each parameter are gathered whole from the shards of all
    processes (ds_to_universal, ZeRO 1-3), so a ZeRO engine of any world size can cut its own shards from them.
    """
    from deepspeed.checkpoint.ds_to_universal import main as ds_to_universal

    out = Path(directory) / UNIVERSAL
    if out.exists():
        shutil.rmtree(out)
    # one worker: extract and merge in this process (worker processes under torchrun gain little here)
    args = argparse.Namespace(input_folder=str(Path(directory) / tag), output_folder=str(out / tag),
                              num_extract_workers=1, num_merge_workers=1, keep_temp_folder=False, strict=True,
                              inject_missing_state=True)  # our client state carries no universal_checkpoint_info
    printed = io.StringIO()  # its progress prints and bars, shown only if it fails
    try:
        with contextlib.redirect_stdout(printed), contextlib.redirect_stderr(printed):
            ds_to_universal(args)
    except Exception as error:
        shutil.rmtree(out, ignore_errors=True)
        raise RuntimeError(f"DeepSpeed could not convert {Path(directory) / tag} to a universal checkpoint: "
                           f"{type(error).__name__}: {error}\n{printed.getvalue()[-2000:]}") from error
    return out


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
    """fp32 weights of a ZeRO 1-3 checkpoint, gathered by DeepSpeed's own zero_to_fp32 (no engine needed).

    bf16 with ZeRO-1 runs DeepSpeed's BF16 optimizer, whose shards zero_to_fp32 does not read ("is not a zero
    checkpoint"); those weights are read from the checkpoint's universal conversion instead.
    """
    from deepspeed.utils.zero_to_fp32 import get_fp32_state_dict_from_zero_checkpoint

    try:
        return get_fp32_state_dict_from_zero_checkpoint(str(directory), tag=tag)
    except ValueError as error:
        if "is not a zero checkpoint" not in str(error):
            raise
    universal = to_universal(directory, tag)
    try:
        return universal_state_dict(universal / tag)
    finally:
        shutil.rmtree(universal)


def universal_state_dict(folder: Path) -> dict[str, torch.Tensor]:
    """The fp32 weights of a universal checkpoint: `zero/<parameter name>/fp32.pt` for each parameter."""
    return {p.name: torch.load(p / "fp32.pt", map_location="cpu", weights_only=True)["param"].detach()
            for p in sorted((Path(folder) / "zero").iterdir()) if (p / "fp32.pt").is_file()}


def main(argv: Optional[list[str]] = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        raise SystemExit("usage: python -m stages.train.checkpoint CHECKPOINT_DIR")
    directory = Path(argv[0])
    latest = latest_tag(directory)
    for step, tag in tags(directory):
        try:
            processes = f"{saved_world_size(directory, tag)} process(es)"
        except FileNotFoundError:
            processes = "incomplete"
        print(f"{tag}  step {step}, {processes}{'  (latest)' if tag == latest else ''}")
    if latest is None:
        print(f"{directory}: no complete checkpoint")


if __name__ == "__main__":
    main()
