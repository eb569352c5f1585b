"""The demo corpus: fixed held-out sentences, deterministic audio, clear errors without the synthesisers."""

from __future__ import annotations

import csv
import hashlib

import pytest

from conftest import REPO
from stages.demo_corpus import make_demo_corpus, plan, read_sentences
from stages.pipeline_config import DemoCorpusConfig

ENGLISH = REPO / "data" / "demo" / "proverbs_kjv.tsv"
MANDARIN = REPO / "data" / "demo" / "tang_couplets.tsv"
SMALL = DemoCorpusConfig(english_voices=("awb", "kal16"), english_train_sentences=2, english_eval_sentences=1,
                         mandarin_voices=("cmn+f3",), mandarin_train_sentences=1, mandarin_eval_sentences=1)


def test_default_plan_matches_the_issue():
    utterances = plan(ENGLISH, MANDARIN, DemoCorpusConfig())
    english = [u for u in utterances if u.language == "en"]
    mandarin = [u for u in utterances if u.language == "zh"]
    assert len([u for u in english if u.split == "train"]) == 800
    assert len([u for u in mandarin if u.split == "train"]) == 200
    assert len({u.text for u in english if u.split == "eval"}) == 40
    assert len({u.text for u in mandarin if u.split == "eval"}) == 20
    assert len({u.utt_id for u in utterances}) == len(utterances)


def test_held_out_sentences_are_never_training_sentences():
    for path in (ENGLISH, MANDARIN):
        with path.open(encoding="utf-8") as f:
            table = list(csv.DictReader(f, delimiter="\t"))
        held_out = {r["text"] for r in table if r["split"] == "eval"}
        train = {r["text"] for r in table if r["split"] == "train"}
        assert held_out and not held_out & train


def test_asking_for_more_sentences_than_shipped_fails_clearly():
    with pytest.raises(ValueError, match="not enough sentences"):
        read_sentences(ENGLISH, 10_000, 0)


def _digest(folder):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_demo_corpus_is_deterministic(tmp_path):
    make_demo_corpus(ENGLISH, MANDARIN, SMALL, tmp_path / "a")
    make_demo_corpus(ENGLISH, MANDARIN, SMALL, tmp_path / "b")
    first = _digest(tmp_path / "a")
    assert first == _digest(tmp_path / "b")
    assert len(first) == 2 * 3 + 2 + 1  # wavs + transcripts.csv
    with (tmp_path / "a" / "transcripts.csv").open(encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert {r["speaker"] for r in rows} == {"awb", "kal16", "cmn_f3"}
    assert {r["split"] for r in rows} == {"train", "eval"}


def test_missing_synthesiser_names_the_fix(tmp_path, monkeypatch):
    monkeypatch.setattr("shutil.which", lambda tool: None)
    with pytest.raises(RuntimeError, match="(espeak-ng|flite) is not installed; run `make setup`"):
        make_demo_corpus(ENGLISH, MANDARIN, SMALL, tmp_path / "out")
    assert not (tmp_path / "out").exists()
