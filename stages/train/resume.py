"""Resume an LM run exactly, and only a run of the same settings: its fingerprint and its client state.

    python -m stages.train.checkpoint results/demo/pretrain/checkpoints     # the checkpoints a rerun resumes from

A checkpoint folder holds `fingerprint.json`: the settings (all but RESUMABLE_CHANGES), the model, the
vocabulary, the codec, a digest of the training data and one of the initial weights. A rerun resumes the
newest checkpoint only when the fingerprints match; a folder of another run (Snakemake reran the job
because a parameter or input changed) is moved aside to `<folder>.stale`, so an accidental change costs
nothing that a rename cannot undo. What DeepSpeed does not save rides in each checkpoint's client state:
step, token count, data position and every process's RNG states.

The world size is not part of the fingerprint: a run may resume with another number of processes (a requeued
job given fewer GPUs). Its checkpoint is then converted to DeepSpeed's universal layout and loaded from there,
so weights, Adam moments, step and schedule carry over exactly; the data continues the same epoch
(data.Position), and the processes that existed before continue their RNG streams. `grad_accum` is per
process, so the global batch follows the world size from then on.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from pathlib import Path
from typing import Any, Callable, Optional, TypeVar

import torch

from stages.config import to_dict
from stages.config.model import ModelConfig
from stages.lm.export import WEIGHTS
from stages.lm.vocab import Vocab
from stages.train import checkpoint
from stages.train.compat import file_digest
from stages.config.pretrain import RESUMABLE_CHANGES, TrainConfig
from stages.train.corpus import CorpusIndex
from stages.train.data import Position
from stages.train.distributed import Dist

log = logging.getLogger("train")
T = TypeVar("T")
FINGERPRINT_FILE = "fingerprint.json"   # what a checkpoint folder was trained with, checked before resuming


def index_digest(index: CorpusIndex) -> str:
    """Identity of the training data as the plan sees it: utterances, their text ids and lengths."""
    digest = hashlib.sha256()
    digest.update("\n".join(index.utt_ids).encode())
    digest.update(index.n_codes.tobytes())
    digest.update(index.text_values.tobytes())
    return digest.hexdigest()


def fingerprint(config: TrainConfig, model_config: ModelConfig, vocab: Vocab, codec: dict[str, str],
                train_index: CorpusIndex, init_from: Optional[Path]) -> dict:
    """What must not change between a checkpoint and its resumption, as plain JSON values."""
    settings = {k: v for k, v in to_dict(config).items() if k not in RESUMABLE_CHANGES}
    found = {"config": settings, "model": to_dict(model_config), "vocab": vocab.to_dict(),
             "codec_id": codec["codec_id"], "data": index_digest(train_index),
             "init_from": file_digest(init_from / WEIGHTS) if init_from else None}
    return json.loads(json.dumps(found))


def fingerprint_changes(saved: dict, now: dict) -> list[str]:
    """Names of what differs between two run fingerprints (config keys as config.<key>)."""
    changes = [f"config.{k}" for k in now["config"] if saved.get("config", {}).get(k) != now["config"][k]]
    return changes + [k for k in now if k != "config" and saved.get(k) != now[k]]


def claim_checkpoint_dir(checkpoint_dir: Path, fingerprint: dict, is_main: bool) -> Optional[str]:
    """The checkpoint to resume from, or None to start afresh; a folder of another run is moved aside.

    Called on every process (it ends on a broadcast of the tag); only the main process reads or changes the folder.
    """
    fingerprint_file = checkpoint_dir / FINGERPRINT_FILE
    if is_main:
        checkpoint_dir.mkdir(parents=True, exist_ok=True)
        removed = checkpoint.remove_unfinished(checkpoint_dir)
        if removed:
            log.warning("removed unfinished checkpoint(s) %s", removed)
        saved = json.loads(fingerprint_file.read_text()) if fingerprint_file.exists() else None
        if checkpoint.latest_tag(checkpoint_dir) and saved != fingerprint:
            stale = checkpoint_dir.with_name(checkpoint_dir.name + ".stale")
            log.warning("%s holds another run (differs: %s); moved it to %s and starting afresh",
                        checkpoint_dir, ", ".join(fingerprint_changes(saved or {}, fingerprint)), stale)
            if stale.exists():
                shutil.rmtree(stale)
            checkpoint_dir.rename(stale)
            checkpoint_dir.mkdir()
        if checkpoint.latest_tag(checkpoint_dir) is None:  # fresh, or killed before its first checkpoint
            fingerprint_file.write_text(json.dumps(fingerprint, indent=2, ensure_ascii=False) + "\n")
    # The main process's answer, sent to all: on a shared filesystem (NFS) another node may still see the
    # folder as it was before it was moved aside, and ranks that disagree on the tag hang in the first load.
    tag = [checkpoint.latest_tag(checkpoint_dir) if is_main else None]
    torch.distributed.broadcast_object_list(tag, src=0)
    return tag[0]


def client_state(step: int, tokens: int, position: Position, dist: Dist) -> dict:
    """What a checkpoint carries besides DeepSpeed's state; gathers every process's RNG states (a collective)."""
    rng = [None] * dist.world_size
    torch.distributed.all_gather_object(rng, checkpoint.rng_states())
    return {"step": step, "tokens": tokens, "position": position.to_dict(), "rng": rng,
            "world_size": dist.world_size}


def on_main(dist: Dist, decide: Callable[[], T]) -> T:
    """`decide()` run by the main process alone, its answer (or its error) sent to every process.

    Each process then takes the same path: one that failed alone, or read the folder differently, would leave
    the others waiting in a collective.
    """
    answer: list = [None]
    if dist.is_main:
        try:
            answer = [(decide(), None)]
        except (OSError, RuntimeError, ValueError) as error:
            answer = [(None, error)]
    torch.distributed.broadcast_object_list(answer, src=0)
    result, error = answer[0]
    if error is not None:
        raise error
    return result


def restore(engine: Any, checkpoint_dir: Path, tag: str, dist: Dist) -> tuple[int, int, Position]:
    """Weights, optimizer and schedule (DeepSpeed), then RNG states; returns (step, tokens, data position).

    Called on every process. A checkpoint of another world size is loaded through a universal checkpoint.
    """
    saved_world_size = on_main(dist, lambda: checkpoint.saved_world_size(checkpoint_dir, tag))
    if saved_world_size == dist.world_size:
        _, state = engine.load_checkpoint(str(checkpoint_dir), tag=tag)
    else:
        state = load_resharded(engine, checkpoint_dir, tag, saved_world_size, dist)
    position = Position.from_dict(state["position"])
    if dist.rank < len(state["rng"]):  # a process added by a larger world keeps the seed it started with
        checkpoint.set_rng_states(state["rng"][dist.rank])
    if dist.is_main:
        log.info("resumed from %s: step %d, epoch %d, batch %d of %d process(es)", tag, state["step"],
                 position.epoch, position.batches, position.world_size)
    return state["step"], state["tokens"], position


def load_resharded(engine: Any, checkpoint_dir: Path, tag: str, saved_world_size: int, dist: Dist) -> dict:
    """Load a checkpoint saved by `saved_world_size` processes into this engine of another world size; its client state.

    The main process converts it to a universal checkpoint (checkpoint.to_universal) while the others wait;
    every process then cuts its own shards from it, and the conversion is deleted once all have loaded.
    """
    def convert() -> Path:
        log.warning("%s was saved by %d process(es); resuming it with %d through a universal checkpoint "
                    "(grad_accum counts per process: a step now trains %d/%d as many batches)",
                    tag, saved_world_size, dist.world_size, dist.world_size, saved_world_size)
        try:
            return checkpoint.to_universal(checkpoint_dir, tag)
        except RuntimeError as error:
            raise RuntimeError(f"{error}\nresume it with {saved_world_size} process(es), or delete {checkpoint_dir} "
                               "to train from scratch") from None

    universal = on_main(dist, convert)
    # DeepSpeed reads the universal layout only when its config says so (`checkpoint.load_universal`); the
    # engine was built for ordinary checkpoints, so the setting is on for this one load
    engine._config.load_universal_checkpoint = True
    try:
        _, state = engine.load_checkpoint(str(universal), tag=tag)
    finally:
        engine._config.load_universal_checkpoint = False
    torch.distributed.barrier()
    if dist.is_main:
        shutil.rmtree(universal)
    return state
