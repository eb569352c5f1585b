"""Text tokenizer used by training and inference: the saved normaliser settings, then the fitted sentencepiece model.

    python -m stages.text.tokenizer results/demo/tokenizer en "Dr. Smith paid $5."   # print the pieces and ids

A tokenizer directory (written by `python -m stages.fit_tokenizer`) holds `spm.model`, `spm.vocab`,
`normalizer.json` and `tokenizer.json`, and with `input: phonemes` also `phonemes.json` (the G2P lexicon of
every corpus sentence). Loading it restores the normaliser (and the input kind) exactly as it was when the
model was fitted, so a sentence becomes the same pieces in training, evaluation and synthesis.

Ids: sentencepiece id 0 is `<unk>`, and that is the only special piece. bos, eos and pad are switched off
because the LM wraps text in its own [SOS] ... [TASK] tokens and places these ids after its specials.
"""

from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path

import sentencepiece as spm

from stages.config.base import from_dict
from stages.config.tokenizer import NormalizerConfig
from stages.text.normalize import library_versions, normalize
from stages.text.phonemes import LEXICON_FILE, Phonemizer, espeak_version

MODEL_FILE = "spm.model"
VOCAB_FILE = "spm.vocab"
NORMALIZER_FILE = "normalizer.json"
SUMMARY_FILE = "tokenizer.json"
UNK_ID = 0


class TextTokenizer:
    """Normalise, then split into sentencepiece ids: `encode(text, language) -> list[int]`."""

    def __init__(self, processor: spm.SentencePieceProcessor, normalizer: NormalizerConfig,
                 phonemizer: Phonemizer | None = None):
        self.processor = processor
        self.normalizer = normalizer
        self.phonemizer = phonemizer  # None: sentencepiece reads the normalised text

    @classmethod
    def load(cls, directory: Path | str) -> TextTokenizer:
        directory = Path(directory)
        saved = json.loads((directory / NORMALIZER_FILE).read_text(encoding="utf-8"))
        normalizer = from_dict(NormalizerConfig, saved["settings"], f"{directory / NORMALIZER_FILE}:settings")
        changed = {name: (was, now) for name, now in library_versions().items()
                   if (was := saved["libraries"].get(name)) != now}
        if changed:
            warnings.warn(f"{directory}: the text normaliser's libraries changed since fitting "
                          f"({', '.join(f'{k} {a} -> {b}' for k, (a, b) in changed.items())}); "
                          "some texts may normalise differently than in training", stacklevel=2)
        processor = spm.SentencePieceProcessor(model_file=str(directory / MODEL_FILE))
        phonemizer = None
        if saved.get("input", "text") == "phonemes":
            phonemizer = Phonemizer.load(directory / LEXICON_FILE)
            if saved.get("espeak_ng") != (now := espeak_version()):
                warnings.warn(f"{directory}: fitted on phonemes of espeak-ng {saved.get('espeak_ng')}, this machine "
                              f"has {now}; sentences outside the saved lexicon may be phonemised differently",
                              stacklevel=2)
        return cls(processor, normalizer, phonemizer)

    @property
    def vocab_size(self) -> int:
        return self.processor.get_piece_size()

    def normalize(self, text: str, language: str) -> str:
        return normalize(text, language, self.normalizer)

    def spoken(self, text: str, language: str) -> str:
        """What sentencepiece reads: the normalised text, or its phonemes."""
        normalised = self.normalize(text, language)
        return self.phonemizer.one(normalised, language) if self.phonemizer and normalised else normalised

    def encode(self, text: str, language: str) -> list[int]:
        return self.processor.encode(self.spoken(text, language), out_type=int)

    def pieces(self, text: str, language: str) -> list[str]:
        return self.processor.encode(self.spoken(text, language), out_type=str)

    def decode(self, ids: list[int]) -> str:
        """The normalised text (or phonemes) back (unknown pieces show as ' ⁇ ')."""
        return self.processor.decode(list(ids))


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 3:
        raise SystemExit('usage: python -m stages.text.tokenizer TOKENIZER_DIR {en|zh} "text"')
    tokenizer = TextTokenizer.load(argv[0])
    print(" ".join(tokenizer.pieces(argv[2], argv[1])))
    print(" ".join(map(str, tokenizer.encode(argv[2], argv[1]))))


if __name__ == "__main__":
    main()
