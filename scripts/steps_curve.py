"""WER against training steps: every kept checkpoint of a finished pretrain speaks held-out sentences, scored.

    python scripts/steps_curve.py --run results/quality --codec assets/codec/demo-75hz --per-voice 5 \
        --out results/quality/steps_curve --threads 2 --temperature 0.5

For each checkpoint in `<run>/pretrain/checkpoints` (keep them with `pretrain.keep_checkpoints`), its weights are
consolidated into a model folder with the final model's configs, tokenizer and codec record; the model then speaks
the first `--per-voice` held-out English sentences of each voice by speaker token (the same sentences `synthesize`
starts with; at `--temperature`, else the model's own) and Whisper tiny.en scores them (scripts/lm_sweep.py's
scoring). The table gives, per step: the validation loss logged at that step, WER, CER and the share of clips that
ended at EOS.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from lm_sweep import score_samples
from stages.config.eval import SynthesisConfig
from stages.lm.export import CONFIG, WEIGHTS, read_config, save_model
from stages.lm.model import MiniMindTTS
from stages.synthesize import synthesize
from stages.train import checkpoint


def checkpoint_model(checkpoints: Path, tag: str, final_model: Path, out: Path) -> Path:
    """The checkpoint's weights in a model folder that is the final model's in everything else."""
    if out.exists():
        return out
    model_config, vocab, generation = read_config(final_model)
    state = checkpoint.consolidated_state_dict(checkpoints, tag)
    if model_config.tie_embeddings:
        state["lm_head.weight"] = state["embed.weight"]
    model = MiniMindTTS(model_config, vocab.size)
    model.load_state_dict(state, strict=True)
    extras = [p for p in sorted(final_model.iterdir()) if p.is_file() and p.name not in (WEIGHTS, CONFIG)]
    return save_model(model, vocab, generation, out, extra_files=extras)


def validation_losses(final_model: Path) -> dict[int, float]:
    rows = [json.loads(line) for line in (final_model / "metrics.jsonl").read_text().splitlines() if line.strip()]
    return {r["step"]: r["loss"] for r in rows if r["kind"] == "val"}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, required=True, help="a finished run folder (pretrain/, codes/)")
    parser.add_argument("--codec", type=Path, required=True, help="codec path without suffix (.yaml, .ckpt)")
    parser.add_argument("--voices", nargs="+", default=["awb", "rms", "slt", "kal16"])
    parser.add_argument("--per-voice", type=int, default=5)
    parser.add_argument("--temperature", type=float, default=None,
                        help="sampling temperature (eval.synthesis.temperature); default: the one training stored")
    parser.add_argument("--steps", type=int, nargs="+", default=None, help="only these kept steps (default: all)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    checkpoints, final_model = args.run / "pretrain" / "checkpoints", args.run / "pretrain" / "model"
    kept = [(step, tag) for step, tag in checkpoint.tags(checkpoints) if args.steps is None or step in args.steps]
    if not kept:
        raise SystemExit(f"{checkpoints}: no checkpoints kept" + (f" at steps {args.steps}" if args.steps else ""))
    codes = sorted((args.run / "codes").glob("shard-*.parquet"))
    losses = validation_losses(final_model)
    synthesis = SynthesisConfig(voices=tuple(args.voices), sentences_per_voice=args.per_voice, zero_shot=False,
                                temperature=args.temperature)
    results = []
    for step, tag in kept:
        folder = args.out / tag
        model = checkpoint_model(checkpoints, tag, final_model, folder / "model")
        samples = folder / "samples"
        if not samples.exists():
            synthesize(model, args.codec.with_suffix(".yaml"), args.codec.with_suffix(".ckpt"), codes, samples,
                       synthesis)
        row = {"step": step, "valid_loss": losses.get(step, float("nan")), **score_samples(samples)}
        results.append(row)
        print(json.dumps(row), flush=True)
    (args.out / "steps_curve.json").write_text(json.dumps(results, indent=2) + "\n")
    print(f"{'step':>6} {'val loss':>8} {'WER':>6} {'CER':>6} {'EOS':>5}")
    for r in results:
        print(f"{r['step']:>6} {r['valid_loss']:>8.3f} {r['wer']:>6.1%} {r['cer']:>6.1%} {r['stopped_by_eos']:>5.0%}")


if __name__ == "__main__":
    main()
