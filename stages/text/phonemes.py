"""G2P through espeak-ng: English IPA with stress marks, Mandarin IPA with tones (the cmn-latn-pinyin voice).

    python -m stages.text.phonemes en "The LORD is my shepherd."     # -> ðə lˈɔːɹd ɪz maɪ ʃˈɛpɚd.

`tokenizer.input: phonemes` puts this between the normaliser and sentencepiece, so the LM reads how a
sentence sounds instead of how it is spelt: from a few thousand sentences a model cannot learn English
spelling, but it can learn forty phonemes. espeak-ng runs as a library (phonemizer's backend, one
process, ~0.6 ms a sentence); its output depends only on the text and espeak-ng's version, and
`Phonemizer` remembers every sentence it has converted. `fit_tokenizer` saves that lexicon (every
manifest text) beside the sentencepiece model as `phonemes.json`, so training reads it back instead of
running espeak-ng again, and synthesis converts only sentences it has never seen.

Mandarin uses `cmn-latn-pinyin`, not plain `cmn`: espeak-ng 1.51's `cmn` switches to English for many
characters and reads their tone digits aloud ("ni three hao three").
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

VOICES = {"en": "en-us", "zh": "cmn-latn-pinyin"}
LEXICON_FILE = "phonemes.json"


def espeak_version() -> str:
    from phonemizer.backend import EspeakBackend

    return ".".join(map(str, EspeakBackend.version()))


class Phonemizer:
    """Text -> phoneme string per language, memoised; `lexicon` is everything converted so far."""

    def __init__(self, lexicon: dict[str, dict[str, str]] | None = None):
        self.lexicon = {language: dict(entries) for language, entries in (lexicon or {}).items()}
        self._backends: dict[str, object] = {}

    def _backend(self, language: str):
        if language not in VOICES:
            raise ValueError(f"no espeak-ng voice for language {language!r} (known: {', '.join(sorted(VOICES))}); "
                             "add one to stages.text.phonemes.VOICES")
        if language not in self._backends:
            from phonemizer.backend import EspeakBackend

            # Mandarin tones are part of the phonemes; English stress marks tell the LM which syllable is long.
            self._backends[language] = EspeakBackend(VOICES[language], preserve_punctuation=True,
                                                     with_stress=language == "en",
                                                     logger=logging.getLogger("phonemizer"))
        return self._backends[language]

    def __call__(self, texts: list[str], language: str) -> list[str]:
        known = self.lexicon.setdefault(language, {})
        missing = sorted({t for t in texts if t not in known})
        if missing:
            converted = self._backend(language).phonemize(missing, strip=True, njobs=1)
            for text, phonemes in zip(missing, converted):
                if text.strip() and not phonemes.strip():
                    raise ValueError(f"espeak-ng ({VOICES[language]}) gave no phonemes for {text!r}")
                known[text] = " ".join(phonemes.split())
        return [known[t] for t in texts]

    def one(self, text: str, language: str) -> str:
        return self([text], language)[0]

    def save(self, path: Path) -> None:
        data = {"espeak_ng": espeak_version(), "voices": VOICES,
                "lexicon": {lang: dict(sorted(entries.items())) for lang, entries in sorted(self.lexicon.items())}}
        Path(path).write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, path: Path) -> Phonemizer:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        if data.get("voices") != VOICES:
            raise ValueError(f"{path}: made with espeak-ng voices {data.get('voices')}, this code uses {VOICES}")
        return cls(data["lexicon"])


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 2:
        raise SystemExit('usage: python -m stages.text.phonemes {en|zh} "text"')
    print(Phonemizer().one(argv[1], argv[0]))


if __name__ == "__main__":
    main()
