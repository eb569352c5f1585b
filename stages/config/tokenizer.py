"""The `tokenizer` section: the text normaliser (`tokenizer.normalizer`) and the sentencepiece model fitted on
the normalised transcripts or their phonemes (stage fit_tokenizer)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from stages.config.base import setting


@dataclass(frozen=True)
class NormalizerConfig:
    """How transcripts are rewritten before sentencepiece sees them (saved in normalizer.json)."""

    lowercase: bool = setting(True, "lower-case Latin letters: with ~1,300 short sentences a separate 'The' and "
                                    "'the' would halve the examples each piece gets, and case carries no sound")
    verbalize_numbers: bool = setting(True, "spell out digits, money, percentages, times and '&': a small corpus "
                                            "cannot teach the model to read numerals")
    expand_abbreviations: bool = setting(True, "expand Mr., Dr., St., etc., e.g., vs. and friends, which are "
                                               "never pronounced as written")


@dataclass(frozen=True)
class TokenizerConfig:
    """Sentencepiece model fitted on the normalised training transcripts (or on their phonemes)."""

    input: Literal["text", "phonemes"] = setting(
        "text", "what sentencepiece is fitted on and the LM reads: the normalised text, or its phonemes from "
        "espeak-ng (English IPA with stress, Mandarin with tones; stages.text.phonemes). Phonemes spare a small "
        "corpus from learning English spelling.")
    vocab_size: int = setting(1000, "an upper bound (a small corpus may support fewer pieces; tokenizer.json has "
                                    "the real size) that must cover every character kept: 200 Proverbs + 100 "
                                    "Tang couplets (~270 distinct training texts) need 586 for single "
                                    "characters, mostly CJK, and support ~1,180 at most, so 1000 leaves ~400 "
                                    "English subwords seen several times each; raise it for larger Mandarin "
                                    "corpora", minimum=8)
    model_type: Literal["unigram", "bpe", "char"] = setting("unigram", "unigram keeps frequent words whole and "
                                                                       "splits rare ones into reusable pieces")
    character_coverage: float = setting(0.9995, "sentencepiece's advice for CJK: keep nearly every character, "
                                                "map only the rarest to <unk>", exclusiveMinimum=0.0, maximum=1.0)
    normalizer: NormalizerConfig = setting(NormalizerConfig(), "how text is normalised before tokenizing; "
                                                               "saved with the model")
