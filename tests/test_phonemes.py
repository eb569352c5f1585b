"""tokenizer.input: phonemes: espeak-ng G2P (English IPA, Mandarin with tones), cached, deterministic, fitted on."""

from __future__ import annotations

import json

import pytest

from stages.fit_tokenizer import fit_tokenizer
from stages.text.phonemes import LEXICON_FILE, Phonemizer
from stages.text.tokenizer import TextTokenizer
from stages.config.tokenizer import TokenizerConfig
from test_fit_tokenizer import corpus, manifest_rows, write_manifest

PHONEMES = TokenizerConfig(vocab_size=120, character_coverage=1.0, input="phonemes")


def test_english_becomes_ipa_with_stress_and_mandarin_keeps_its_tones():
    g2p = Phonemizer()
    assert g2p.one("the lord is my shepherd.", "en") == "ðə lˈɔːɹd ɪz maɪ ʃˈɛpɚd."
    # cmn-latn-pinyin reads every character in Mandarin; tones survive as marks on each syllable
    mandarin = g2p.one("你好世界", "zh")
    assert len(mandarin.split()) == 4 and "(en)" not in mandarin
    assert g2p.one("你好", "zh") != g2p.one("泥好", "zh")  # ni3 and ni2: only the tone differs


def test_phonemes_are_deterministic_and_remembered(monkeypatch):
    g2p = Phonemizer()
    first = g2p(["a wise man will hear.", "pride goeth before destruction."], "en")
    monkeypatch.setattr(g2p, "_backend", lambda language: pytest.fail("a known sentence ran espeak-ng again"))
    assert g2p(["pride goeth before destruction.", "a wise man will hear."], "en") == first[::-1]
    assert Phonemizer()(["a wise man will hear."], "en") == first[:1]  # a fresh process gives the same string


def test_a_language_without_a_voice_is_refused_by_name():
    with pytest.raises(ValueError, match="no espeak-ng voice for language 'fr'"):
        Phonemizer().one("bonjour", "fr")


def test_the_tokenizer_is_fitted_on_phonemes_and_reads_its_saved_lexicon(tmp_path, monkeypatch):
    manifest = write_manifest(tmp_path / "manifest.parquet", manifest_rows(corpus()))
    fit_tokenizer(manifest, tmp_path / "tok", PHONEMES)
    saved = json.loads((tmp_path / "tok" / LEXICON_FILE).read_text(encoding="utf-8"))
    assert set(saved["lexicon"]) == {"en", "zh"}
    assert "ðə lˈɔːɹd" in " ".join(saved["lexicon"]["en"].values())
    tokenizer = TextTokenizer.load(tmp_path / "tok")
    assert tokenizer.phonemizer is not None
    # Every manifest sentence, eval included, is in the lexicon: training never runs espeak-ng again.
    monkeypatch.setattr(tokenizer.phonemizer, "_backend", lambda language: pytest.fail("espeak-ng ran"))
    pieces = tokenizer.pieces("Pride goeth before destruction, and an haughty spirit before a fall.", "en")
    assert "".join(pieces).replace("▁", " ").strip().startswith("pɹˈaɪd")
    assert tokenizer.encode("Pride goeth before destruction, and an haughty spirit before a fall.", "en")


def test_phoneme_fits_are_byte_identical_and_differ_from_text_fits(tmp_path):
    manifest = write_manifest(tmp_path / "manifest.parquet", manifest_rows(corpus()))
    for name in ("a", "b"):
        fit_tokenizer(manifest, tmp_path / name, PHONEMES)
    fit_tokenizer(manifest, tmp_path / "text", TokenizerConfig(vocab_size=120, character_coverage=1.0))
    for file in ("spm.model", LEXICON_FILE, "normalizer.json"):
        assert (tmp_path / "a" / file).read_bytes() == (tmp_path / "b" / file).read_bytes()
    assert (tmp_path / "a" / "spm.model").read_bytes() != (tmp_path / "text" / "spm.model").read_bytes()
    assert not (tmp_path / "text" / LEXICON_FILE).exists()
    assert TextTokenizer.load(tmp_path / "text").phonemizer is None


def test_a_sentence_outside_the_lexicon_is_phonemised_on_the_fly(tmp_path):
    manifest = write_manifest(tmp_path / "manifest.parquet", manifest_rows(corpus()))
    fit_tokenizer(manifest, tmp_path / "tok", PHONEMES)
    tokenizer = TextTokenizer.load(tmp_path / "tok")
    assert tokenizer.spoken("The wicked flee.", "en") == Phonemizer().one("the wicked flee.", "en")
