"""Resume an LM run exactly, and only a run of the same settings: its fingerprint and its client state.

    python -m stages.train.checkpoint results/demo/pretrain/checkpoints     # the checkpoints a rerun resumes from

A checkpoint folder holds `fingerprint.json`: the settings (all but RESUMABLE_CHANGES), the model, the
vocabulary, the codec, a digest of the training data and one of the initial weights. A rerun resumes the
newest checkpoint only when the fingerprints match; a folder of another run (Snakemake reran the job
because a parameter or input changed) is moved aside to `<folder>.stale`, so an accidental change costs
nothing that a rename cannot undo. What DeepSpeed does not save rides in each checkpoint's client state:
step, token count, data position and every process's RNG states.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from pathlib import Path
from typing import Any, Optional

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


def restore(engine: Any, checkpoint_dir: Path, tag: str, dist: Dist) -> tuple[int, int, Position]:
    """Weights, optimizer and schedule (DeepSpeed), then RNG states; returns (step, tokens, data position)."""
    _, state = engine.load_checkpoint(str(checkpoint_dir), tag=tag)
    position = Position.from_dict(state["position"])
    if state["world_size"] == dist.world_size:
        checkpoint.set_rng_states(state["rng"][dist.rank])
    elif dist.is_main:
        log.warning("resuming %d process(es)' run with %d: data order and dropout will not match an "
                    "uninterrupted run", state["world_size"], dist.world_size)
    if dist.is_main:
        log.info("resumed from %s: step %d, epoch %d, batch %d", tag, state["step"], position.epoch,
                 position.batches)
    return state["step"], state["tokens"], position
