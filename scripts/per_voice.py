"""Per-voice scores of a finished evaluation: one row per system and voice, from `eval/utterances.parquet`.

    python scripts/per_voice.py results/quality/eval [--language en]

Corpus WER/CER (all errors over all reference words or characters, as the metrics page) for Whisper and
pocketsphinx (ps_*), STOI where measured, the share of model clips that stopped at EOS, and the clip count;
printed as a Markdown table grouped by voice, so a voice's models sit beside its ground truth and codec.
"""

from __future__ import annotations

import argparse
import math
from collections import defaultdict
from pathlib import Path

from stages.common.tables import SCORES_FILE, read_scores
from stages.metrics import summarize

COLUMNS = ("wer", "cer", "ps_wer", "ps_cer", "stoi", "dtw_mcd", "speech_duration_ratio")
SYSTEM_ORDER = ("ground_truth", "codec", "pretrain", "pretrain_zero_shot", "sft", "sft_zero_shot", "silence", "noise")


def table(rows: list[dict], language: str) -> list[dict]:
    groups = defaultdict(list)
    for row in rows:
        if row["language"] == language:
            groups[(row["voice"], row["system"])].append(row)
    order = {name: i for i, name in enumerate(SYSTEM_ORDER)}
    out = []
    for (voice, system), members in sorted(groups.items(), key=lambda kv: (kv[0][0], order.get(kv[0][1], 99))):
        stats = summarize(members)
        stops = [r["stop_reason"] for r in members if r.get("stop_reason")]
        out.append({"voice": voice, "system": system, "clips": len(members),
                    **{c: stats.get(c, math.nan) for c in COLUMNS},
                    "eos": stops.count("eos") / len(stops) if stops else math.nan})
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("eval_dir", type=Path, help="an evaluate output folder")
    parser.add_argument("--language", default="en")
    args = parser.parse_args(argv)
    rows = table(read_scores(args.eval_dir / SCORES_FILE), args.language)
    shown = [c for c in COLUMNS if any(not math.isnan(r[c]) for r in rows)]
    print("| voice | system | clips | " + " | ".join(shown) + " | EOS |")
    print("|---|---|---|" + "---|" * (len(shown) + 1))
    for r in rows:
        cells = [f"{r[c]:.1%}" if c in ("wer", "cer", "ps_wer", "ps_cer") else f"{r[c]:.3f}" for c in shown]
        cells = ["–" if "nan" in c else c for c in cells]
        eos = "–" if math.isnan(r["eos"]) else f"{r['eos']:.0%}"
        print(f"| {r['voice']} | {r['system']} | {r['clips']} | " + " | ".join(cells) + f" | {eos} |")


if __name__ == "__main__":
    main()
