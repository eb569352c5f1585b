"""The command-line arguments that load a Synthesizer: shared by `minimind-tts` (say) and `minimind-tts serve`."""

from __future__ import annotations

import argparse
from pathlib import Path

from stages.common.devices import job_device
from stages.lm.export import QUANTIZE_CHOICES
from stages.runtime.synthesizer import Synthesizer


def add_synthesis_arguments(parser: argparse.ArgumentParser) -> None:
    """The model, its codec and the generation overrides: what every way of speaking (say, serve) loads."""
    parser.add_argument("--model", type=Path, required=True, help="a model folder written by pretrain or sft")
    parser.add_argument("--codec-config", type=Path, required=True)
    parser.add_argument("--codec-checkpoint", type=Path, required=True)
    parser.add_argument("--temperature", type=float, help="0 decodes greedily; default: the model's")
    parser.add_argument("--ras-window", type=int, help="repetition-aware sampling window in codes; 0 disables")
    parser.add_argument("--ras-tau", type=float, help="RAS threshold (share of the window)")
    parser.add_argument("--seed", type=int)
    parser.add_argument("--quantize", choices=QUANTIZE_CHOICES, default="none",
                        help="int8: the LM's linear layers in dynamic int8 on a CPU (26m: 1.5x on a batch; "
                             "README, Synthesis speed)")
    parser.add_argument("--compile", action="store_true",
                        help="decode steps as one torch.compile graph, compiled at start-up (about a minute for 26m on 2 "
                             "CPU cores; with --quantize int8 the quickest on a CPU: README, Synthesis speed)")
    parser.add_argument("--device", default="auto", help="auto (a GPU when usable; required when the job was "
                        "given GPUs), cpu, cuda, cuda:1, ...")


def load_synthesizer(args: argparse.Namespace) -> Synthesizer:
    overrides = {k: v for k, v in (("temperature", args.temperature), ("seed", args.seed),
                                   ("ras_window", args.ras_window), ("ras_tau", args.ras_tau)) if v is not None}
    return Synthesizer(args.model, args.codec_config, args.codec_checkpoint, job_device(args.device),
                       quantize=args.quantize, compile=args.compile, **overrides)
