"""How much the LM reads its text: held-out speech loss with each utterance's own text against another's.

    python scripts/text_use.py --model results/quality/pretrain/model --codes results/quality/codes/shard-*.parquet
    python scripts/text_use.py --model a/model b/model --codes ... --json results/text_use.json

For the first `--utterances` English utterances of the valid split, the speech codes (and EOS) are scored
teacher-forced twice: after their own text, and after the text of the utterance `--shift` places further on
(same layout, same speaker token). The gap, other minus own, is what the text is worth to the model in nats
per code; a model that babbles fluent speech unrelated to its text has a gap near 0 (the 4,000-sentence
quality run: 0.04 after 800 steps, 0.10 of it in the first quarter of the utterance and 0.02 in the others),
and one that reads its text has a gap over the whole utterance (the 8,000-sentence run with the alignment
prior: 0.20, 0.35 / 0.17 / 0.15 / 0.14 by quarter). Both losses are also given by quarter of the utterance.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pyarrow.parquet as pq
import torch
import torch.nn.functional as F

from stages.lm.export import load_model
from stages.lm.vocab import IGNORE_INDEX
from stages.text.tokenizer import TextTokenizer

QUARTERS = 4


@torch.no_grad()
def speech_loss(loaded, tokenizer: TextTokenizer, text: str, codes: list[int], speaker: str | None) -> list[float]:
    """Per-code cross-entropy of codes + EOS after `text`, teacher-forced."""
    ids, targets = loaded.vocab.example(tokenizer.encode(text, "en"), codes, speaker)
    logits = loaded.model(torch.tensor([ids])).logits[0].float()
    targets = torch.tensor(targets)
    keep = targets != IGNORE_INDEX
    return F.cross_entropy(logits[keep], targets[keep], reduction="none").tolist()


def by_quarter(losses: list[list[float]]) -> list[float]:
    means = []
    for q in range(QUARTERS):
        parts = [row[q * len(row) // QUARTERS:(q + 1) * len(row) // QUARTERS] for row in losses]
        values = [v for part in parts for v in part]
        means.append(sum(values) / max(len(values), 1))
    return means


def text_use(model_dir: Path, rows: list[dict], shift: int) -> dict:
    loaded = load_model(model_dir, dtype=None)
    tokenizer = TextTokenizer.load(model_dir)
    speakers = set(loaded.vocab.speakers)
    own, other = [], []
    for i, row in enumerate(rows):
        speaker = row["speaker"] if row["speaker"] in speakers else None
        own.append(speech_loss(loaded, tokenizer, row["text"], row["codes"], speaker))
        other.append(speech_loss(loaded, tokenizer, rows[(i + shift) % len(rows)]["text"], row["codes"], speaker))
    mean = lambda losses: sum(map(sum, losses)) / sum(map(len, losses))  # noqa: E731 - per code, over all
    return {"model": str(model_dir), "utterances": len(rows), "own_text": mean(own), "other_text": mean(other),
            "gap": mean(other) - mean(own), "own_by_quarter": by_quarter(own), "other_by_quarter": by_quarter(other)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, nargs="+", required=True, help="model folders to compare")
    parser.add_argument("--codes", type=Path, nargs="+", required=True, help="the run's codes shards")
    parser.add_argument("--utterances", type=int, default=24)
    parser.add_argument("--shift", type=int, default=7, help="whose text an utterance is given: i + shift")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    rows = [r for shard in args.codes for r in pq.read_table(shard).to_pylist()
            if r["split"] == "valid" and r["language"] == "en"][:args.utterances]
    if len(rows) < 2:
        raise SystemExit(f"{len(rows)} English valid utterances in {args.codes}: need at least 2")
    results = [text_use(model, rows, args.shift) for model in args.model]
    print(f"{'own text':>9} {'other':>7} {'gap':>6}  gap by quarter   model ({len(rows)} valid utterances)")
    for r in results:
        quarters = " ".join(f"{o - w:.2f}" for w, o in zip(r["own_by_quarter"], r["other_by_quarter"]))
        print(f"{r['own_text']:>9.3f} {r['other_text']:>7.3f} {r['gap']:>6.3f}  {quarters:<15}  {r['model']}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
