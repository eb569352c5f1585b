"""Maintainer script that made the demo corpus text files in this folder (not run by the pipeline).

    apt-get install bible-kjv fortunes-zh && pip install pocketsphinx
    python data/demo/extract_demo_text.py data/demo

English: verses of 6-13 words from the whole King James Version (public domain), from Debian's `bible-kjv`
package. The LM learns how spelling sounds only from many distinct sentences, so the training rows come
from every book, in a fixed pseudo-random order: the first N rows are a spread over the Bible, whatever N a
config asks for. After every such verse come clauses of 6-13 words cut from the longer verses at `;` and
`:` (in their own pseudo-random order), so a config can ask for many more distinct sentences than there are
short verses while the first 2,801 rows, and every corpus made from them, stay as they were. The books of
Psalms, Ecclesiastes and James are reserved for evaluation and never appear.
The 40 evaluation verses are Proverbs whose every word is in the pocketsphinx US-English dictionary (so
ASR scoring measures the model, not out-of-vocabulary words); a training verse never repeats their text.

Mandarin: couplets of the Tang poems in Debian's `fortunes-zh` package (`tang300`); the 20 held-out
couplets are those whose characters the first 100 training couplets cover best. Everything else is `train`.
"""

from __future__ import annotations

import csv
import hashlib
import re
import subprocess
import sys
from pathlib import Path

import pocketsphinx

EN_EVAL, ZH_EVAL = 40, 20
EN_WORDS = (6, 13)  # short verses: ~3.7 s each in flite, so 2,000 of them stay near 2 h of audio
RESERVED_BOOKS = {"Psa": "Psalms", "Eccl": "Ecclesiastes", "Jas": "James"}
ZH_KEEP = 400  # the demo trains on 200 couplets; 400 leaves room for a larger corpus
ZH_COVERAGE_TRAIN = 100  # held-out couplets are chosen to use the characters of the first 100


def kjv_verses() -> list[tuple[str, str, str]]:
    """(book abbreviation, reference, text) of every verse, in canonical order."""
    out = subprocess.run(["bible", "-f", "Gen1:1-Rev22:21"], check=True, capture_output=True, text=True).stdout
    verses = []
    for line in out.splitlines():
        ref, _, text = line.partition(" ")
        book = re.match(r"\d?[A-Za-z]+", ref).group()
        verses.append((book, ref, text.strip()))
    return verses


def in_dictionary_words() -> set[str]:
    path = Path(pocketsphinx.get_model_path()) / "en-us" / "cmudict-en-us.dict"
    return {line.split()[0].split("(")[0] for line in path.read_text().splitlines() if line.strip()}


def spread(candidates: list[int], count: int) -> set[int]:
    step = len(candidates) / count
    return {candidates[int(i * step)] for i in range(count)}


def english_rows() -> list[tuple[str, str, str]]:
    verses = kjv_verses()
    words = in_dictionary_words()
    lo, hi = EN_WORDS
    # The evaluation verses: Proverbs of 6-16 words, fully in the ASR dictionary, spread over the book.
    proverbs, seen = [], set()
    for book, ref, text in verses:
        if book == "Prv" and 6 <= len(text.split()) <= 16 and text not in seen:
            seen.add(text)
            proverbs.append((ref, text))
    clean = [i for i, (_, t) in enumerate(proverbs)
             if all(w in words for w in re.findall(r"[a-z']+", t.lower().replace("'s", "")))]
    held_out = [proverbs[i] for i in sorted(spread(clean, EN_EVAL))]
    # Training verses: distinct texts (some verses repeat word for word across books), never an eval text.
    taken, train = {t for _, t in held_out}, []
    for book, ref, text in verses:
        if book not in RESERVED_BOOKS and lo <= len(text.split()) <= hi and text not in taken:
            taken.add(text)
            train.append((ref, text))
    train.sort(key=lambda row: hashlib.sha256(row[0].encode()).hexdigest())
    clauses, held_out_words = [], [spoken_words(text) for _, text in held_out]
    for book, ref, text in verses:
        if book in RESERVED_BOOKS or len(text.split()) <= hi:
            continue
        for number, clause in enumerate(re.split(r"[;:]\s+", text)):
            clause = clause.strip().rstrip(",")
            if lo <= len(clause.split()) <= hi and clause not in taken and not part_of_any(clause, held_out_words):
                taken.add(clause)
                clauses.append((f"{ref}.{number}", clause))
    clauses.sort(key=lambda row: hashlib.sha256(row[0].encode()).hexdigest())
    return ([(ref, text, "eval") for ref, text in held_out] + [(ref, text, "train") for ref, text in train]
            + [(ref, text, "train") for ref, text in clauses])


def spoken_words(text: str) -> str:
    return " ".join(re.findall(r"[a-z']+", text.lower()))


def part_of_any(clause: str, held_out_words: list[str]) -> bool:
    """Whether a clause is (a part of) a held-out Proverb: scoring it would then measure memory, not speech."""
    return any(spoken_words(clause) in proverb for proverb in held_out_words)


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


def write(path: Path, rows: list[tuple[str, str, str]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, delimiter="\t", lineterminator="\n")
        writer.writerow(["source", "text", "split"])
        writer.writerows(rows)


def main(out_dir: Path) -> None:
    english = english_rows()
    write(out_dir / "kjv_verses.tsv", english)
    couplets = tang_couplets()[:ZH_KEEP]
    held_out = best_covered(couplets, ZH_COVERAGE_TRAIN, ZH_EVAL)
    write(out_dir / "tang_couplets.tsv",
          [(src, text, "eval" if i in held_out else "train") for i, (src, text) in enumerate(couplets)])
    print(f"{sum(r[2] == 'train' for r in english)} training verses and clauses, {EN_EVAL} eval Proverbs, {len(couplets)} couplets")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
