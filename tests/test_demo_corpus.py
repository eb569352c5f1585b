"""The demo corpus: fixed held-out sentences, deterministic audio, clear errors without the synthesisers."""

from __future__ import annotations

import csv
import hashlib
import re

import pytest

from conftest import REPO
from stages.demo_corpus import language_switches, make_demo_corpus, plan, read_sentences
from stages.config.corpus import DemoCorpusConfig

ENGLISH = REPO / "data" / "demo" / "kjv_verses.tsv"
MANDARIN = REPO / "data" / "demo" / "tang_couplets.tsv"
SMALL = DemoCorpusConfig(english_voices=("awb", "kal16"), english_train_sentences=2, english_eval_sentences=1,
                         mandarin_voices=("cmn-latn-pinyin+f3",), mandarin_train_sentences=1, mandarin_eval_sentences=1)


def test_default_plan_matches_the_issue():
    utterances = plan(ENGLISH, MANDARIN, DemoCorpusConfig())
    english = [u for u in utterances if u.language == "en"]
    mandarin = [u for u in utterances if u.language == "zh"]
    assert len([u for u in english if u.split == "train"]) == 2000
    assert len({u.text for u in english if u.split == "train"}) == 2000  # each verse read once, voices in rotation
    assert {u.speaker for u in english if u.split == "train"} == set(DemoCorpusConfig().english_voices)
    assert len([u for u in mandarin if u.split == "train"]) == 400
    assert len({u.text for u in english if u.split == "eval"}) == 40
    assert len([u for u in english if u.split == "eval"]) == 160  # every voice reads every held-out verse
    assert len({u.text for u in mandarin if u.split == "eval"}) == 20
    assert len({u.utt_id for u in utterances}) == len(utterances)


def test_held_out_sentences_are_never_training_sentences():
    for path in (ENGLISH, MANDARIN):
        with path.open(encoding="utf-8") as f:
            table = list(csv.DictReader(f, delimiter="\t"))
        held_out = {r["text"] for r in table if r["split"] == "eval"}
        train = {r["text"] for r in table if r["split"] == "train"}
        assert held_out and not held_out & train


def test_two_readers_per_sentence_rotate_over_the_voices():
    cfg = DemoCorpusConfig(english_voices=("awb", "rms", "slt"), english_train_sentences=3,
                           english_readers_per_sentence=2, english_eval_sentences=0, mandarin_voices=())
    readers = [(u.text, u.speaker) for u in plan(ENGLISH, MANDARIN, cfg)]
    by_text = {}
    for text, speaker in readers:
        by_text.setdefault(text, []).append(speaker)
    assert list(by_text.values()) == [["awb", "rms"], ["rms", "slt"], ["slt", "awb"]]


def test_english_training_verses_come_from_the_whole_bible_but_the_reserved_books():
    with ENGLISH.open(encoding="utf-8") as f:
        table = list(csv.DictReader(f, delimiter="\t"))
    train = [r for r in table if r["split"] == "train"]
    books = {re.match(r"\d?[A-Za-z]+", r["source"]).group() for r in train}
    assert len(train) >= 2000 and len({r["text"] for r in train}) == len(train)
    assert not books & {"Psa", "Eccl", "Jas"}  # Psalms, Ecclesiastes and James are for evaluation only
    assert len(books) > 50
    assert {r["source"][:3] for r in table if r["split"] == "eval"} == {"Prv"}
    first = {re.match(r"\d?[A-Za-z]+", r["source"]).group() for r in train[:2000]}
    assert {"Ge", "Isa", "Mat", "Rev"} <= first  # the demo's first 2,000 rows spread over the whole Bible


def test_clauses_follow_the_short_verses_and_are_never_part_of_a_held_out_proverb():
    with ENGLISH.open(encoding="utf-8") as f:
        table = list(csv.DictReader(f, delimiter="\t"))
    train = [r for r in table if r["split"] == "train"]
    is_clause = [bool(re.search(r"\.\d+$", r["source"])) for r in train]
    first_clause = is_clause.index(True)
    assert first_clause == 2801 and all(is_clause[first_clause:])  # verses first, so old corpora stay the same
    assert len({r["text"] for r in train}) == len(train) > 15_000
    assert all(6 <= len(r["text"].split()) <= 13 for r in train)
    words = lambda text: " ".join(re.findall(r"[a-z']+", text.lower()))
    held_out = [words(r["text"]) for r in table if r["split"] == "eval"]
    assert not [r for r in train[first_clause:] if any(words(r["text"]) in proverb for proverb in held_out)]


@pytest.mark.parametrize("voice", DemoCorpusConfig().mandarin_voices)
def test_every_mandarin_line_is_read_in_mandarin(voice):
    with MANDARIN.open(encoding="utf-8") as f:
        lines = [r["text"] for r in csv.DictReader(f, delimiter="\t")]
    assert language_switches(voice, lines) == []


def test_a_voice_that_switches_to_english_is_caught_and_refused(tmp_path):
    assert language_switches("cmn", ["你好世界"])  # espeak-ng 1.51's plain cmn: "(en)nI55Tr'i:55..."
    cfg = DemoCorpusConfig(english_voices=("awb",), english_train_sentences=1, english_eval_sentences=0,
                           mandarin_voices=("cmn+m3",), mandarin_train_sentences=3, mandarin_eval_sentences=0)
    with pytest.raises(ValueError, match="reads .* partly in another language.*cmn-latn-pinyin"):
        make_demo_corpus(ENGLISH, MANDARIN, cfg, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_asking_for_more_sentences_than_shipped_fails_clearly():
    with pytest.raises(ValueError, match="not enough sentences"):
        read_sentences(ENGLISH, 20_000, 0)


def _digest(folder):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_demo_corpus_is_deterministic(tmp_path):
    make_demo_corpus(ENGLISH, MANDARIN, SMALL, tmp_path / "a")
    make_demo_corpus(ENGLISH, MANDARIN, SMALL, tmp_path / "b")
    first = _digest(tmp_path / "a")
    assert first == _digest(tmp_path / "b")
    assert len(first) == 2 + 2 * 1 + 2 + 1  # 2 train verses read once, 1 eval verse by both voices, 2 couplets, csv
    with (tmp_path / "a" / "transcripts.csv").open(encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert {r["speaker"] for r in rows} == {"awb", "kal16", "cmn_f3"}
    assert {r["split"] for r in rows} == {"train", "eval"}


def test_missing_synthesiser_names_the_fix(tmp_path, monkeypatch):
    monkeypatch.setattr("shutil.which", lambda tool: None)
    with pytest.raises(RuntimeError, match="(espeak-ng|flite) is not installed; run `make setup`"):
        make_demo_corpus(ENGLISH, MANDARIN, SMALL, tmp_path / "out")
    assert not (tmp_path / "out").exists()
