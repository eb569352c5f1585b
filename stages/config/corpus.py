"""The `corpus` section: which corpus to read and how to split it, and the offline demo corpus (`corpus.demo`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Optional

from stages.config.base import ConfigError, setting

CorpusFormat = Literal["demo", "ljspeech", "libritts", "vctk", "aishell3", "csv", "jsonl"]


@dataclass(frozen=True)
class DemoCorpusConfig:
    """The offline demo corpus: synthetic speech of shipped public-domain text (data/demo/)."""

    english_voices: tuple[str, ...] = setting(
        ["awb", "rms", "slt", "kal16"],
        "flite voices for English; all four are built from real CMU ARCTIC speakers, so speaker similarity means something.")
    english_train_sentences: int = setting(
        2000, "distinct KJV sentences of 6-13 words for training, from every book but the reserved Psalms, "
        "Ecclesiastes and James: the 2,801 short verses first, then clauses of longer verses (17,929 in all); "
        "2,000 read once each is about 2 h of audio.", minimum=1)
    english_readers_per_sentence: int = setting(
        1, "English voices that read each training verse, in rotation over `english_voices`; held-out verses "
        "are read by every voice.", minimum=1)
    english_eval_sentences: int = setting(
        40, "held-out Proverbs (all words in the ASR dictionary) spoken by every English voice.", minimum=0, maximum=40)
    mandarin_voices: tuple[str, ...] = setting(
        ["cmn-latn-pinyin+m3", "cmn-latn-pinyin+f3"],
        "espeak-ng Mandarin voice variants (voice+variant), a male and a female voice. Use the cmn-latn-pinyin "
        "voices: espeak-ng 1.51's plain `cmn` reads many characters as pinyin and says the tone digits in English.")
    mandarin_train_sentences: int = setting(
        200, "Tang-poem couplets spoken by every Mandarin voice for training.", minimum=0)
    mandarin_eval_sentences: int = setting(
        20, "held-out couplets spoken by every Mandarin voice.", minimum=0, maximum=20)


@dataclass(frozen=True)
class CorpusConfig:
    """Which corpus to read and how to split it."""

    format: CorpusFormat = setting(
        "demo", "corpus layout; 'demo' builds the offline demo corpus, the others import a corpus found at `path`.")
    path: Optional[str] = setting(
        None, "corpus root folder (ljspeech, libritts, vctk, aishell3) or table file (csv, jsonl); unused for demo.")
    language: Optional[str] = setting(
        None, "language code for formats that do not record one; null takes the importer's own (en, or zh for aishell3).")
    vctk_mic: Literal["mic1", "mic2"] = setting(
        "mic1", "VCTK microphone to use; mic1 (omni) is the one most recipes train on.")
    eval_fraction: float = setting(
        0.01, "share of distinct sentences held out for evaluation (never trained on); demo uses its fixed split.",
        minimum=0.0, maximum=0.5)
    valid_fraction: float = setting(
        0.02, "share of distinct training sentences used for validation loss.", minimum=0.0, maximum=0.5)
    demo: DemoCorpusConfig = setting(DemoCorpusConfig(), "settings of the demo corpus (format: demo).")

    def validate(self, where: str) -> None:
        if self.format != "demo" and not self.path:
            raise ConfigError(f"{where}.path: required when {where}.format is {self.format!r}")
        if self.format != "demo" and not Path(self.path).exists():
            raise ConfigError(f"{where}.path: {self.path!r} does not exist")
