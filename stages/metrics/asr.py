"""Speech recognition for WER: pocketsphinx's US-English model, which ships inside its wheel.

    python -m stages.metrics REF.wav HYP.wav "reference text" --metrics asr     # both transcripts and WERs

`RECOGNIZERS` maps a language to a factory returning a recogniser: a function from 16 kHz float32 mono
samples to text. The factory runs once per process (building a pocketsphinx decoder takes ~0.3 s, a
Whisper model much longer). To score with a bigger model, replace the entry before scoring:

    from stages.metrics import asr
    asr.RECOGNIZERS["en"] = lambda: my_whisper_transcribe    # (samples_16k: np.ndarray) -> str

Mandarin has no entry: no offline recogniser exists here, so Mandarin is scored by DTW mel distance.
pocketsphinx is a weak recogniser (SPEC §5: 16-33% WER on ground-truth flite voices, 0% on the real
ARCTIC clips), so its WER is only meaningful next to the same voice's ground-truth WER.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from stages.metrics.common import SCORING_RATE, require, to_scoring_rate

Recognizer = Callable[[np.ndarray], str]


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


RECOGNIZERS: dict[str, Callable[[], Recognizer]] = {"en": PocketsphinxEnglish}
_built: dict[str, tuple[Callable[[], Recognizer], Recognizer]] = {}


def recognizer(language: str) -> Recognizer:
    """The recogniser for `language`, built on first use and rebuilt only if its factory was replaced."""
    if language not in RECOGNIZERS:
        raise KeyError(f"no speech recogniser registered for language {language!r} "
                       f"(registered: {sorted(RECOGNIZERS)}); add one to stages.metrics.asr.RECOGNIZERS")
    factory = RECOGNIZERS[language]
    if language not in _built or _built[language][0] is not factory:
        _built[language] = (factory, factory())
    return _built[language][1]


def transcribe(audio: np.ndarray, sample_rate: int, language: str = "en") -> str:
    """What the registered recogniser hears in `audio` (any rate; resampled to 16 kHz)."""
    return recognizer(language)(to_scoring_rate(audio, sample_rate))
