"""Speaker-similarity proxy: cosine similarity of resemblyzer utterance embeddings (GE2E d-vectors).

    python -m stages.metrics REF.wav HYP.wav "reference text" --metrics speaker [--voice A.wav B.wav ...]

resemblyzer 0.1.4 ships its encoder weights (no download) but imports only with setuptools<81, because
its webrtcvad dependency imports pkg_resources. An embedding is computed after resemblyzer's own
preprocessing (level normalised, long pauses removed by webrtcvad) and is L2-normalised; a voice's
reference embedding is the normalised mean over several of its utterances, as resemblyzer's
`embed_speaker` does. This is a proxy for the paper's WavLM-based similarity, not the same number: any
embedder (16 kHz samples -> 1-D vector) can replace it through `stages.metrics.scoring.speaker_scorer`.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable, Hashable, Iterable, Sequence

import numpy as np

from stages.metrics.common import Unmeasurable, require, single_thread, to_scoring_rate

Embedder = Callable[[np.ndarray], np.ndarray]
MIN_SPEECH_SECONDS = 0.5  # less speech than this after the VAD is noise or silence, not a voice


class Resemblyzer:
    """resemblyzer's VoiceEncoder on the CPU, loaded once (~3 s, mostly importing librosa)."""

    def __init__(self) -> None:
        with warnings.catch_warnings():  # its imports of pkg_resources and scipy.ndimage.morphology warn each run
            warnings.filterwarnings("ignore", message="pkg_resources is deprecated", category=UserWarning)
            warnings.filterwarnings("ignore", message="Please import `binary_dilation`", category=DeprecationWarning)
            resemblyzer = require("resemblyzer", "resemblyzer==0.1.4", "and setuptools<81 for webrtcvad")
        self._preprocess = resemblyzer.preprocess_wav
        self._encoder = resemblyzer.VoiceEncoder("cpu", verbose=False)

    def __call__(self, samples: np.ndarray) -> np.ndarray:
        if not np.any(samples):  # resemblyzer's level normalisation divides by the RMS
            raise Unmeasurable("clip is digital silence")
        speech = self._preprocess(samples)  # 16 kHz in, 16 kHz out: no resampling inside
        if len(speech) < MIN_SPEECH_SECONDS * 16000:
            raise Unmeasurable(f"voice activity detector found {len(speech) / 16000:.2f} s of speech "
                               f"(< {MIN_SPEECH_SECONDS} s)")
        with single_thread():
            return np.asarray(self._encoder.embed_utterance(speech), dtype=np.float64)


@functools.cache
def default_embedder() -> Embedder:
    return Resemblyzer()


def _unit(vector: np.ndarray) -> np.ndarray:
    norm = np.linalg.norm(vector)
    if not np.isfinite(norm) or norm == 0:
        raise Unmeasurable("embedding has zero or non-finite norm")
    return vector / norm


def embed(audio: np.ndarray, sample_rate: int, embedder: Embedder | None = None) -> np.ndarray:
    """Unit-length speaker embedding of one clip."""
    return _unit((embedder or default_embedder())(to_scoring_rate(audio, sample_rate)))


def voice_embedding(clips: Sequence[np.ndarray], sample_rate: int, embedder: Embedder | None = None) -> np.ndarray:
    """Reference embedding of a voice: the unit-length mean of its clips' unit embeddings."""
    if not clips:
        raise ValueError("a voice reference needs at least one clip")
    return _unit(np.mean([embed(clip, sample_rate, embedder) for clip in clips], axis=0))


def cosine_similarity(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.dot(_unit(np.asarray(a, np.float64)), _unit(np.asarray(b, np.float64))))


class VoiceBank:
    """Reference embeddings of voices, each embedded once, and the similarity of a clip to them.

    The one way the pipeline compares a clip with a voice: the `speaker` scorer keys voices by their clips,
    the evaluation by voice name. The embedder is built when the first clip needs it.
    """

    def __init__(self, embedder_factory: Callable[[], Embedder] = default_embedder, capacity: int = 64):
        self._factory, self._embedder, self.capacity = embedder_factory, None, capacity
        self.voices: dict[Hashable, np.ndarray] = {}

    @property
    def embedder(self) -> Embedder:
        if self._embedder is None:
            self._embedder = self._factory()
        return self._embedder

    def add(self, key: Hashable, clips: Sequence[np.ndarray], sample_rate: int) -> np.ndarray:
        if key not in self.voices:
            if len(self.voices) >= self.capacity:
                self.voices.clear()
            self.voices[key] = voice_embedding(clips, sample_rate, self.embedder)
        return self.voices[key]

    def similarities(self, audio: np.ndarray, sample_rate: int, keys: Iterable[Hashable] | None = None
                     ) -> dict[Hashable, float]:
        """Cosine similarity of the clip's embedding to each voice (all of them by default)."""
        clip = embed(audio, sample_rate, self.embedder)
        return {key: cosine_similarity(clip, self.voices[key]) for key in (self.voices if keys is None else keys)}
