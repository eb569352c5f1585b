"""Audio in and out for the codec: read any soundfile format, convert as the official code does, write WAV.

    from stages.codec.audio_io import read_for_codec   # used by `python -m stages.codec encode`
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import torchaudio


def convert_audio(wav: torch.Tensor, sample_rate: int, target_rate: int) -> torch.Tensor:
    """(channels, N) -> (1, N'): channel mean, then torchaudio's `Resample` — the official `convert_audio`.

    Another resampler (soxr, librosa, scipy) gives slightly different samples and can change codes.
    """
    mono = wav.mean(0, keepdim=True)
    if sample_rate == target_rate:
        return mono
    return torchaudio.transforms.Resample(sample_rate, target_rate)(mono)


def read_for_codec(path: str | Path, target_rate: int) -> torch.Tensor:
    """An audio file as (1, N) float32 at `target_rate`; int16 files scale by 1/32768 like torchaudio.load."""
    data, rate = sf.read(str(path), dtype="float32", always_2d=True)
    return convert_audio(torch.from_numpy(np.ascontiguousarray(data.T)), rate, target_rate)


def write_wav(path: str | Path, audio: np.ndarray, sample_rate: int) -> None:
    """Mono float audio (N,) -> 16-bit PCM WAV (what the official examples save), clipped to [-1, 1]."""
    sf.write(str(path), np.clip(audio, -1.0, 1.0), sample_rate, subtype="PCM_16", format="WAV")
