"""Maintainer script that made the demo corpus text files in this folder (not run by the pipeline).

    apt-get install bible-kjv fortunes-zh && pip install pocketsphinx
    python data/demo/extract_demo_text.py data/demo

English: the Book of Proverbs (King James Version, public domain) from Debian's `bible-kjv` package, verses
of 6-16 words. Mandarin: couplets of the Tang poems in Debian's `fortunes-zh` package (`tang300`).
The evaluation split is fixed here, once, so it never changes between runs: 40 Proverbs whose every word is
in the pocketsphinx US-English dictionary (so ASR scoring measures the model, not out-of-vocabulary words)
and the 20 couplets whose characters the demo's 100 training couplets cover best. Everything else is `train`.
"""

from __future__ import annotations

import csv
import re
import subprocess
import sys
from pathlib import Path

import pocketsphinx

EN_EVAL, ZH_EVAL = 40, 20
ZH_KEEP = 400  # the demo needs at most ~120 couplets; 400 leaves room for a larger quality corpus
ZH_DEMO_TRAIN = 100  # couplets the default demo trains on: held-out couplets should use their characters


def proverbs() -> list[tuple[str, str]]:
    out = subprocess.run(["bible", "-f", "Proverbs 1:1-31:31"], check=True, capture_output=True, text=True).stdout
    verses, seen = [], set()
    for line in out.splitlines():
        ref, _, text = line.partition(" ")
        text = text.strip()
        # Some verses repeat word for word (6:10 = 24:33); a repeat could put one sentence in both splits.
        if 6 <= len(text.split()) <= 16 and text not in seen:
            seen.add(text)
            verses.append((ref.replace("Prv", "Proverbs "), text))
    return verses


def tang_couplets() -> list[tuple[str, str]]:
    raw = Path("/usr/share/games/fortunes/tang300.u8").read_text(encoding="utf-8")
    raw = re.sub(r"\x1b\[[0-9;]*m", "", raw)
    couplets, seen = [], set()
    for poem in raw.split("\n%\n"):
        lines = [ln.strip() for ln in poem.strip().splitlines() if ln.strip()]
        if len(lines) < 3:
            continue
        title, body = lines[0], lines[2:]
        for line in body:
            if re.fullmatch(r"[\u4e00-\u9fff]{5,7}，[\u4e00-\u9fff]{5,7}[。？！]", line) and line not in seen:
                seen.add(line)
                couplets.append((title, line))
    return couplets


def in_dictionary_words() -> set[str]:
    path = Path(pocketsphinx.get_model_path()) / "en-us" / "cmudict-en-us.dict"
    return {line.split()[0].split("(")[0] for line in path.read_text().splitlines() if line.strip()}


def spread(candidates: list[int], count: int) -> set[int]:
    step = len(candidates) / count
    return {candidates[int(i * step)] for i in range(count)}


def best_covered(couplets: list[tuple[str, str]], train: int, count: int) -> set[int]:
    """Held-out couplets whose characters the first `train` couplets cover best.

    A character never seen in training cannot be spoken by the model (it is <unk> to the tokenizer), so
    randomly chosen Tang couplets would measure the vocabulary gap, not the model.
    """
    seen = set("".join(text for _, text in couplets[:train]))

    def coverage(i: int) -> float:
        chars = re.sub(r"[，。？！]", "", couplets[i][1])
        return sum(ch in seen for ch in chars) / len(chars)

    return set(sorted(range(train, len(couplets)), key=lambda i: (-coverage(i), i))[:count])


def write(path: Path, rows: list[tuple[str, str]], eval_rows: set[int]) -> None:
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, delimiter="\t", lineterminator="\n")
        writer.writerow(["source", "text", "split"])
        for i, (source, text) in enumerate(rows):
            writer.writerow([source, text, "eval" if i in eval_rows else "train"])


def main(out_dir: Path) -> None:
    words = in_dictionary_words()
    verses = proverbs()
    clean = [i for i, (_, t) in enumerate(verses)
             if all(w in words for w in re.findall(r"[a-z']+", t.lower().replace("'s", "")))]
    write(out_dir / "proverbs_kjv.tsv", verses, spread(clean, EN_EVAL))
    couplets = tang_couplets()[:ZH_KEEP]
    write(out_dir / "tang_couplets.tsv", couplets, best_covered(couplets, ZH_DEMO_TRAIN, ZH_EVAL))
    print(f"{len(verses)} verses ({len(clean)} fully in the ASR dictionary), {len(couplets)} couplets")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
