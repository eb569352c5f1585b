"""Signal metrics of a degraded clip against its reference: STOI, PESQ, mel distances, DTW, durations.

    python -m stages.metrics REF.wav HYP.wav "reference text" --metrics stoi,pesq,mel_l1,dtw,duration

Every function takes float32 mono waveforms and their common sample rate and works at 16 kHz. Two kinds:
- time-aligned (STOI, PESQ wideband, log-mel L1): for a codec resynthesis of the reference, whose samples
  line up with it. Lengths may differ by the codec's padding (the longer is cut); clips whose lengths
  differ by more than 5% are not aligned and raise `Unmeasurable`.
- alignment-free (DTW log-mel distance, DTW mel-cepstral distortion, duration ratio): for model output,
  which says the same words at its own pace; this is how Mandarin is scored, as no recogniser exists here.
Leading and trailing silence is cut before DTW (frames 40 dB below the loudest), so a pause before the
first word costs nothing there; the duration ratio is reported both raw and on the trimmed speech span.
"""

from __future__ import annotations

import functools
import math
import warnings

import numpy as np
import torch
import torchaudio

from stages.common.audio import trim_silence
from stages.metrics.common import SCORING_RATE, Unmeasurable, require, single_thread, to_scoring_rate

# 32 ms windows every 10 ms, 80 mel bands over 0-8 kHz: the usual speech analysis at 16 kHz, close to
# the codec's own mel loss (43 ms / 10.7 ms at 24 kHz).
N_FFT, HOP, N_MELS = 512, 160, 80
# Mel magnitudes below the 16-bit quantisation noise (~1e-3 per band here, ~100 dB under a full-scale
# tone at ~133) are clamped: differences no 16-bit file can hold must not dominate a log distance.
LOG_FLOOR = 1e-3
N_CEPSTRA = 24  # c1..c24, the usual MCD order at 16 kHz; c0 (level) is left out as in MCD
MAX_LENGTH_MISMATCH = 0.05
TRIM_TOP_DB, TRIM_MARGIN_SECONDS = 40.0, 0.05
_MCD_SCALE = 10.0 / math.log(10.0) * math.sqrt(2.0)  # cepstral Euclidean distance -> dB


def _aligned_pair(reference: np.ndarray, degraded: np.ndarray, sample_rate: int) -> tuple[np.ndarray, np.ndarray]:
    ref, deg = to_scoring_rate(reference, sample_rate), to_scoring_rate(degraded, sample_rate)
    longer = max(len(ref), len(deg))
    if longer == 0:
        raise Unmeasurable("both clips are empty")
    if abs(len(ref) - len(deg)) > MAX_LENGTH_MISMATCH * longer:
        raise Unmeasurable(f"clips are not time-aligned ({len(ref) / SCORING_RATE:.2f} s vs "
                           f"{len(deg) / SCORING_RATE:.2f} s); use the DTW distances")
    n = min(len(ref), len(deg))
    return ref[:n], deg[:n]


def stoi(reference: np.ndarray, degraded: np.ndarray, sample_rate: int, extended: bool = False) -> float:
    """Short-time objective intelligibility (Taal et al. 2011) in [0, 1]; 1 for identical signals."""
    pystoi = require("pystoi", "pystoi==0.4.1")
    ref, deg = _aligned_pair(reference, degraded, sample_rate)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        value = float(pystoi.stoi(ref, deg, SCORING_RATE, extended=extended))
    if any("Not enough STFT frames" in str(w.message) for w in caught):
        raise Unmeasurable("fewer than 30 speech frames (~0.4 s) in the reference after pystoi drops silence")
    return value


def pesq_wideband(reference: np.ndarray, degraded: np.ndarray, sample_rate: int) -> float:
    """ITU-T P.862.2 wideband PESQ (MOS-LQO, 1.04 to 4.64) at 16 kHz."""
    pesq = require("pesq", "pesq==0.0.4")
    ref, deg = _aligned_pair(reference, degraded, sample_rate)
    if not np.any(deg):
        # An all-zero degraded clip makes the wrapper fail converting a NaN level to int; a silent
        # reference is reported by PESQ itself ("No utterances detected").
        raise Unmeasurable("PESQ: the degraded clip is digital silence")
    try:
        return float(pesq.pesq(SCORING_RATE, ref, deg, "wb"))
    except pesq.PesqError as e:  # NoUtterancesError, BufferTooShortError
        message = e.args[0].decode() if e.args and isinstance(e.args[0], bytes) else str(e)
        raise Unmeasurable(f"PESQ: {message}") from e


@functools.cache
def _mel_transform() -> torchaudio.transforms.MelSpectrogram:
    return torchaudio.transforms.MelSpectrogram(sample_rate=SCORING_RATE, n_fft=N_FFT, hop_length=HOP,
                                                n_mels=N_MELS, f_min=0.0, f_max=SCORING_RATE / 2, power=1.0)


def log_mel(audio: np.ndarray, sample_rate: int) -> np.ndarray:
    """Natural-log mel magnitude spectrogram at 16 kHz, shaped (frames, 80)."""
    x = to_scoring_rate(audio, sample_rate)
    with single_thread(), torch.no_grad():
        mel = _mel_transform()(torch.from_numpy(np.ascontiguousarray(x)))
    return torch.log(mel.clamp_min(LOG_FLOOR)).T.numpy()


def mel_cepstra(audio: np.ndarray, sample_rate: int) -> np.ndarray:
    """Mel cepstra c1..c24 of each frame, shaped (frames, 24).

    The cepstrum is the cosine series of the log magnitude on a mel-warped frequency axis,
    log|X(w)| = c0 + 2 * sum_n c_n cos(n w), sampled at the 80 band centres; this scaling (not the
    orthonormal DCT of MFCCs) puts distortions on the usual MCD scale of a few dB.
    """
    spectrum = log_mel(audio, sample_rate)
    k, n = np.arange(N_MELS), np.arange(1, N_CEPSTRA + 1)
    cosines = np.cos(np.pi / N_MELS * (k[None, :] + 0.5) * n[:, None]) / N_MELS
    return spectrum @ cosines.T


def mel_l1(reference: np.ndarray, degraded: np.ndarray, sample_rate: int) -> float:
    """Mean absolute log-mel difference of two time-aligned clips (the codec's reconstruction measure)."""
    ref, deg = _aligned_pair(reference, degraded, sample_rate)
    return float(np.mean(np.abs(log_mel(ref, SCORING_RATE) - log_mel(deg, SCORING_RATE))))


def dtw(cost: np.ndarray) -> tuple[float, np.ndarray]:
    """Dynamic time warping over a (n, m) frame-distance matrix with steps (1,0), (0,1), (1,1).

    Returns the mean cost along the cheapest path from (0, 0) to (n-1, m-1) and the path as (k, 2) indices.
    Cells on one anti-diagonal depend only on the two before it, so each diagonal is one vector operation.
    """
    n, m = cost.shape
    if n == 0 or m == 0:
        raise Unmeasurable("a clip has no frames")
    total = np.full((n + 1, m + 1), np.inf)
    total[0, 0] = 0.0
    for diagonal in range(2, n + m + 1):  # cell (i, j), 1-based, lies on diagonal i + j
        i = np.arange(max(1, diagonal - m), min(n, diagonal - 1) + 1)
        j = diagonal - i
        best = np.minimum(np.minimum(total[i - 1, j], total[i, j - 1]), total[i - 1, j - 1])
        total[i, j] = cost[i - 1, j - 1] + best
    path = [(n - 1, m - 1)]
    i, j = n, m
    while (i, j) != (1, 1):
        steps = ((i - 1, j - 1), (i - 1, j), (i, j - 1))
        i, j = min(steps, key=lambda s: total[s])
        path.append((i - 1, j - 1))
    path_array = np.array(path[::-1])
    return float(total[n, m] / len(path_array)), path_array


def _speech_span(audio: np.ndarray, sample_rate: int) -> np.ndarray:
    x = to_scoring_rate(audio, sample_rate)
    if not np.any(x):
        raise Unmeasurable("clip is digital silence")
    return trim_silence(x, SCORING_RATE, TRIM_TOP_DB, TRIM_MARGIN_SECONDS)


def dtw_log_mel_distance(reference: np.ndarray, degraded: np.ndarray, sample_rate: int) -> float:
    """Mean absolute log-mel difference along the DTW alignment of the two speech spans."""
    ref = log_mel(_speech_span(reference, sample_rate), SCORING_RATE)
    deg = log_mel(_speech_span(degraded, sample_rate), SCORING_RATE)
    cost = np.abs(ref[:, None, :] - deg[None, :, :]).mean(axis=2)
    return dtw(cost)[0]


def dtw_mel_cepstral_distortion(reference: np.ndarray, degraded: np.ndarray, sample_rate: int) -> float:
    """Mel-cepstral distortion in dB along the DTW alignment of the two speech spans.

    The mel warping is a filterbank, not SPTK's all-pass mel-cepstral analysis, so compare these numbers
    with each other (ground truth, codec, model), not with published MCD figures.
    """
    ref = mel_cepstra(_speech_span(reference, sample_rate), SCORING_RATE)
    deg = mel_cepstra(_speech_span(degraded, sample_rate), SCORING_RATE)
    cost = _MCD_SCALE * np.sqrt(((ref[:, None, :] - deg[None, :, :]) ** 2).sum(axis=2))
    return dtw(cost)[0]


def duration_ratio(reference: np.ndarray, degraded: np.ndarray, sample_rate: int, speech_only: bool = False) -> float:
    """Duration of `degraded` over that of `reference`; with speech_only, of their silence-trimmed spans."""
    if speech_only:
        ref, deg = _speech_span(reference, sample_rate), _speech_span(degraded, sample_rate)
    else:
        ref, deg = np.asarray(reference), np.asarray(degraded)
    if len(ref) == 0:
        raise Unmeasurable("reference clip is empty")
    return len(deg) / len(ref)


def real_time_factor(processing_seconds: float, audio_seconds: float) -> float:
    """Seconds of compute per second of audio: below 1 is faster than real time."""
    if audio_seconds <= 0:
        raise ValueError(f"audio duration must be positive, got {audio_seconds}")
    return processing_seconds / audio_seconds
