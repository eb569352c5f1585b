"""Audio in and out for the codec: read any soundfile format, convert as the official code does, write WAV.

    from stages.codec.audio_io import read_for_codec   # used by `python -m stages.codec encode`

The decoding, downmix and resampling are the pipeline's own (stages.common.audio), which match the
official `convert_audio`: channel mean, then torchaudio's `Resample`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from stages.common.audio import read_audio, resample, to_mono


def read_for_codec(path: str | Path, target_rate: int) -> torch.Tensor:
    """An audio file as (1, N) float32 at `target_rate`; int16 files scale by 1/32768 like torchaudio.load."""
    samples, rate = read_audio(str(path))
    return torch.from_numpy(np.ascontiguousarray(resample(to_mono(samples), rate, target_rate)))[None]


def write_wav(path: str | Path, audio: np.ndarray, sample_rate: int) -> None:
    """Mono float audio (N,) -> 16-bit PCM WAV (what the official examples save), clipped to [-1, 1]."""
    sf.write(str(path), np.clip(audio, -1.0, 1.0), sample_rate, subtype="PCM_16", format="WAV")
