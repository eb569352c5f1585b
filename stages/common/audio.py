"""Audio conditioning shared by the stages: decode, downmix, resample, trim, level, encode to FLAC.

    python -c "from stages.common.audio import read_audio; print(read_audio('tests/fixtures/arctic/arctic_a0007.wav')[1])"

Files are read with soundfile (WAV of any PCM width or float, FLAC, OGG, ...); resampling uses torchaudio's
`Resample`, loudness is BS.1770 with torchaudio's K-weighting biquads run by scipy's `lfilter`. A clip that
cannot be used raises `Unusable` with a short reason code (`corrupt`, `zero_length`, `non_finite`,
`all_silent`, `too_short`, `too_long`) that becomes a quarantine row; it is never silently dropped.
"""

from __future__ import annotations

import functools
import io
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import soundfile as sf
import torch
import torchaudio
from scipy.signal import lfilter

if TYPE_CHECKING:  # annotations only: this module needs none of the config's code
    from stages.config.audio import AudioConfig

# BS.1770 measures loudness in 400 ms blocks, 75% overlapped; shorter clips are zero-padded (gating ignores
# the padding). Blocks under -70 LUFS, then those 10 LU under the mean of the rest, are gated out.
_LOUDNESS_BLOCK_SECONDS, _LOUDNESS_BLOCK_OVERLAP = 0.4, 0.75
_LOUDNESS_OFFSET, _ABSOLUTE_GATE, _RELATIVE_GATE = -0.691, -70.0, -10.0
_TRIM_FRAME_SECONDS, _TRIM_HOP_SECONDS = 0.02, 0.01


class Unusable(Exception):
    """This clip cannot be used; `code` is the quarantine reason's stable prefix."""

    def __init__(self, code: str, detail: str):
        super().__init__(f"{code}: {detail}")
        self.code = code


@dataclass(frozen=True)
class Conditioned:
    samples: np.ndarray  # float32, mono, at the target rate, loudness-matched and trimmed
    sample_rate: int
    source_loudness_lufs: float


def read_audio(path: str) -> tuple[np.ndarray, int]:
    """Decode a file into float32 samples shaped (channels, frames) and its sample rate."""
    try:
        data, rate = sf.read(path, dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, ValueError) as e:
        raise Unusable("corrupt", f"cannot decode audio: {e}") from e
    if data.shape[0] == 0:
        raise Unusable("zero_length", "the file holds no samples")
    if not np.isfinite(data).all():
        raise Unusable("non_finite", f"{int((~np.isfinite(data)).sum())} NaN/inf sample(s)")
    return np.ascontiguousarray(data.T), rate


def to_mono(samples: np.ndarray) -> np.ndarray:
    """Channel mean, as WavTokenizer's own convert_audio does."""
    return samples.mean(axis=0) if samples.shape[0] > 1 else samples[0]


@functools.lru_cache(maxsize=8)
def _resampler(rate: int, target_rate: int) -> torchaudio.transforms.Resample:
    return torchaudio.transforms.Resample(rate, target_rate)


def resample(mono: np.ndarray, rate: int, target_rate: int) -> np.ndarray:
    """torchaudio's `Resample`, as WavTokenizer's own convert_audio: the one resampler of the project.

    Another resampler (soxr, librosa, scipy, even `torchaudio.functional.resample` at some rate pairs)
    gives slightly different samples and can change codes. The transform (its sinc kernel) is kept per
    rate pair, so a shard of same-rate clips builds it once.
    """
    if rate == target_rate:
        return mono
    with torch.no_grad():
        return _resampler(rate, target_rate)(torch.from_numpy(np.ascontiguousarray(mono))).numpy()


def trim_silence(mono: np.ndarray, rate: int, top_db: float, margin_seconds: float) -> np.ndarray:
    """Cut leading/trailing frames more than `top_db` below the loudest frame, keeping a margin."""
    frame, hop = int(_TRIM_FRAME_SECONDS * rate), int(_TRIM_HOP_SECONDS * rate)
    if len(mono) < frame:
        return mono
    frames = np.lib.stride_tricks.sliding_window_view(mono, frame)[::hop]
    energy_db = 10 * np.log10(np.mean(frames.astype(np.float64) ** 2, axis=1) + 1e-20)
    voiced = np.flatnonzero(energy_db > energy_db.max() - top_db)
    margin = int(margin_seconds * rate)
    start = max(0, voiced[0] * hop - margin)
    end = min(len(mono), voiced[-1] * hop + frame + margin)
    return mono[start:end]


def _k_weighting(rate: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """BS.1770's two biquads as `torchaudio.functional.loudness` designs them (RBJ cookbook): a +4 dB high shelf
    at 1500 Hz, Q 1/sqrt(2), then a high-pass at 38 Hz, Q 0.5, as (b, a) coefficient pairs."""
    w0 = 2 * np.pi * 1500.0 / rate
    gain = 10 ** (4.0 / 40)
    alpha = np.sin(w0) / 2 / (1 / np.sqrt(2))
    shelf, minus, plus = 2 * np.sqrt(gain) * alpha, (gain - 1) * np.cos(w0), (gain + 1) * np.cos(w0)
    treble = (np.array([gain * ((gain + 1) + minus + shelf), -2 * gain * ((gain - 1) + plus),
                        gain * ((gain + 1) + minus - shelf)]),
              np.array([(gain + 1) - minus + shelf, 2 * ((gain - 1) - plus), (gain + 1) - minus - shelf]))
    w0 = 2 * np.pi * 38.0 / rate
    alpha = np.sin(w0) / 2 / 0.5
    highpass = (np.array([(1 + np.cos(w0)) / 2, -1 - np.cos(w0), (1 + np.cos(w0)) / 2]),
                np.array([1 + alpha, -2 * np.cos(w0), 1 - alpha]))
    return [treble, highpass]


def loudness_lufs(mono: np.ndarray, rate: int) -> float:
    """Integrated loudness (BS.1770-4) of a mono clip; -inf for silence.

    Equal to `torchaudio.functional.loudness` (tests/test_audio.py checks it), whose filters run a Python loop
    per sample where torchaudio's native extension is absent (beside a CPU-only torch: scripts/setup.sh).
    """
    block = int(_LOUDNESS_BLOCK_SECONDS * rate)
    weighted = np.pad(np.asarray(mono, dtype=np.float64), (0, max(0, block - len(mono))))
    for b, a in _k_weighting(rate):
        weighted = np.clip(lfilter(b, a, weighted), -1.0, 1.0)  # torchaudio's biquads clamp their output
    step = int(round(block * (1 - _LOUDNESS_BLOCK_OVERLAP)))
    energy = np.lib.stride_tricks.sliding_window_view(weighted**2, block)[::step].mean(axis=1)
    with np.errstate(divide="ignore"):
        block_lufs = _LOUDNESS_OFFSET + 10 * np.log10(energy)
    gated = block_lufs > _ABSOLUTE_GATE
    if not gated.any():
        return float("-inf")
    gated &= block_lufs > _LOUDNESS_OFFSET + 10 * np.log10(energy[gated].mean()) + _RELATIVE_GATE
    return float(_LOUDNESS_OFFSET + 10 * np.log10(energy[gated].mean()))


def condition(samples: np.ndarray, rate: int, cfg: AudioConfig) -> Conditioned:
    """Downmix, resample, trim, length-filter and loudness-normalise one decoded clip."""
    mono = resample(to_mono(samples), rate, cfg.sample_rate)
    if np.abs(mono).max() == 0.0:
        raise Unusable("all_silent", "every sample is zero")
    mono = trim_silence(mono, cfg.sample_rate, cfg.trim_top_db, cfg.trim_margin_seconds)
    seconds = len(mono) / cfg.sample_rate
    if seconds < cfg.min_seconds:
        raise Unusable("too_short", f"{seconds:.3f} s after trimming < audio.min_seconds {cfg.min_seconds}")
    if seconds > cfg.max_seconds:
        raise Unusable("too_long", f"{seconds:.3f} s after trimming > audio.max_seconds {cfg.max_seconds}")
    loudness = loudness_lufs(mono, cfg.sample_rate)
    if loudness < cfg.silence_lufs:
        raise Unusable("all_silent", f"loudness {loudness:.1f} LUFS < audio.silence_lufs {cfg.silence_lufs}")
    mono = mono * 10 ** ((cfg.loudness_lufs - loudness) / 20)
    peak = float(np.abs(mono).max())
    if peak > cfg.peak_limit:
        mono = mono * (cfg.peak_limit / peak)
    return Conditioned(mono.astype(np.float32), cfg.sample_rate, loudness)


def encode_flac(mono: np.ndarray, rate: int) -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, mono, rate, format="FLAC", subtype="PCM_16")
    return buffer.getvalue()


def decode_flac(data: bytes) -> tuple[np.ndarray, int]:
    """The FLAC bytes of an audio shard row as float32 mono samples and their rate."""
    samples, rate = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
    return to_mono(np.ascontiguousarray(samples.T)), rate
