"""What every metric module shares: the 16 kHz scoring rate, input checks, the two ways a score can fail.

    python -m stages.metrics REF.wav HYP.wav "reference text"     # every metric goes through these helpers

All scorers here (pocketsphinx, PESQ wideband, resemblyzer, DNSMOS) are built for 16 kHz, and so are the
bigger models a user may plug in (Whisper, WavLM, UTMOS), so every clip is brought to 16 kHz mono once.
"""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import Iterator
from types import ModuleType

import numpy as np
import torch

from stages.common.audio import resample

SCORING_RATE = 16000


class MissingPackage(ImportError):
    """A metric's package is not installed (or does not import); the message says which and how to get it."""


class Unmeasurable(ValueError):
    """This metric has no value for these inputs (no speech found, clip too short); the message says why."""


def require(module: str, pip_spec: str, note: str = "") -> ModuleType:
    """Import `module` or raise MissingPackage naming the pip requirement, so other metrics keep working."""
    try:
        return importlib.import_module(module)
    except ImportError as e:  # also a transitive failure, e.g. webrtcvad's pkg_resources under setuptools>=81
        raise MissingPackage(f"{module} is unavailable ({e}); install it with: pip install '{pip_spec}'"
                             + (f" ({note})" if note else "")) from e


@contextlib.contextmanager
def single_thread() -> Iterator[None]:
    """Run small torch models on one intra-op thread.

    Measured on the shared 2-core machine: resemblyzer's 3-layer LSTM took 0.15 s per clip on one thread
    and 15 s on two, because the spinning thread pool fights other processes for the cores. Models this
    small gain nothing from threads, so the speed-up is free.
    """
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def as_mono(audio: np.ndarray) -> np.ndarray:
    """Check that `audio` is a finite 1-D waveform and return it as float32."""
    audio = np.asarray(audio)
    if audio.ndim != 1:
        raise ValueError(f"expected mono audio shaped (samples,), got shape {audio.shape}")
    if not np.issubdtype(audio.dtype, np.floating):
        raise ValueError(f"expected float samples in [-1, 1], got dtype {audio.dtype}")
    if not np.all(np.isfinite(audio)):
        raise ValueError("audio contains NaN or infinity")
    return audio.astype(np.float32, copy=False)


def to_scoring_rate(audio: np.ndarray, sample_rate: int) -> np.ndarray:
    """Float32 mono at 16 kHz (torchaudio's band-limited resampler)."""
    audio = as_mono(audio)
    if sample_rate <= 0:
        raise ValueError(f"sample rate must be positive, got {sample_rate}")
    with single_thread():
        return resample(np.ascontiguousarray(audio), sample_rate, SCORING_RATE)
