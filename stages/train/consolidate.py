"""The end of an LM run: its latest DeepSpeed checkpoint consolidated into a model folder without DeepSpeed.

    python -m stages.train_lm ... --out-dir results/demo/pretrain/model     # the stage ends with this

DeepSpeed's own zero_to_fp32 gathers the fp32 weights of any ZeRO stage (checkpoint.py); the folder is then
written by stages.lm.export.save_model, the one writer of model folders, with the files of the run beside
the weights: the tokenizer's files, `codec.json` (the codec the codes came from, checked when SFT starts
from the folder), `train_config.json` (the resolved settings) and `metrics.jsonl`. The run writes the
middle two into its checkpoint folder when it starts (`write_run_files`).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import torch

from stages.config.model import GenerationConfig, ModelConfig
from stages.lm.export import CODEC_FILE, CONFIG, WEIGHTS, save_model
from stages.lm.model import MiniMindTTS
from stages.lm.vocab import Vocab
from stages.train import checkpoint
from stages.train.metrics import METRICS_FILE

log = logging.getLogger("train")
CONFIG_FILE = "train_config.json"


def write_run_files(checkpoint_dir: Path, resolved: dict, codec: dict[str, str]) -> None:
    """The resolved settings and the codec metadata, into the checkpoint folder (main process only)."""
    (checkpoint_dir / CONFIG_FILE).write_text(json.dumps(resolved, indent=2, ensure_ascii=False) + "\n")
    (checkpoint_dir / CODEC_FILE).write_text(json.dumps(codec, indent=2) + "\n")


def export_tag(checkpoint_dir: Path, export: str) -> str:
    """The checkpoint to export: the latest, or with `export: best` the best-validated (the latest if none)."""
    marked = checkpoint.best(checkpoint_dir) if export == "best" else None
    if export == "best" and marked is None:
        log.warning("export: best, but no checkpoint was marked best (no valid split?): exporting the latest")
    return marked["tag"] if marked else checkpoint.latest_tag(checkpoint_dir)


def export_model(checkpoint_dir: Path, model_config: ModelConfig, vocab: Vocab, generation: GenerationConfig,
                 tokenizer_dir: Path, out_dir: Path, is_main: bool, export: str = "last") -> Path:
    """Consolidate a checkpoint (`export_tag`) into `out_dir`: weights, config.json, tokenizer, codec, config, metrics.

    Called on every process (it ends on a barrier); only the main process writes.
    """
    out_dir = Path(out_dir)
    if is_main:
        tag = export_tag(checkpoint_dir, export)
        state = checkpoint.consolidated_state_dict(checkpoint_dir, tag)
        if model_config.tie_embeddings:
            state["lm_head.weight"] = state["embed.weight"]
        model = MiniMindTTS(model_config, vocab.size)
        model.load_state_dict(state, strict=True)
        ours = (WEIGHTS, CONFIG, CODEC_FILE, CONFIG_FILE, METRICS_FILE)
        tokenizer_files = [p for p in sorted(tokenizer_dir.iterdir()) if p.is_file() and p.name not in ours]
        extras = [*tokenizer_files, checkpoint_dir / CODEC_FILE, checkpoint_dir / CONFIG_FILE,
                  checkpoint_dir / METRICS_FILE]
        save_model(model, vocab, generation, out_dir, extra_files=extras)
        log.info("wrote %s from checkpoint %s", out_dir, tag)
    torch.distributed.barrier()
    return out_dir
