"""Signal metrics on real speech: identity is best, noise makes every score worse, DTW ignores tempo."""

from __future__ import annotations

import math

import numpy as np
import pytest
import soundfile as sf
import torch
import torchaudio.functional as AF

from conftest import ARCTIC
from stages.common.audio import resample
from stages.metrics.common import Unmeasurable
from stages.metrics.signal import (dtw, dtw_log_mel_distance, dtw_mel_cepstral_distortion, duration_ratio, log_mel,
                                   mel_l1, pesq_wideband, real_time_factor, stoi)

RATE = 16000


def clip(name: str) -> np.ndarray:
    samples, rate = sf.read(ARCTIC / name, dtype="float32")
    assert rate == RATE
    return samples


def with_noise(x: np.ndarray, snr_db: float) -> np.ndarray:
    power = float(np.mean(x.astype(np.float64) ** 2)) / 10 ** (snr_db / 10)
    return (x + np.random.default_rng(0).normal(0, math.sqrt(power), x.shape)).astype(np.float32)


def time_stretched(x: np.ndarray, rate: float) -> np.ndarray:
    """Same words, same pitch, different tempo (phase vocoder); rate 0.8 makes it 25% longer."""
    window = torch.hann_window(512)
    spec = torch.stft(torch.from_numpy(x), 512, 128, window=window, return_complex=True)
    advance = torch.linspace(0, math.pi * 128, 257)[..., None]
    return torch.istft(AF.phase_vocoder(spec, rate, advance), 512, 128, window=window).numpy()


@pytest.fixture(scope="module")
def speech() -> np.ndarray:
    return clip("arctic_a0007.wav")


def test_stoi_and_pesq_are_maximal_for_identity_and_fall_with_noise(speech):
    assert stoi(speech, speech, RATE) == pytest.approx(1.0)
    assert pesq_wideband(speech, speech, RATE) == pytest.approx(4.644, abs=1e-3)  # P.862.2's ceiling
    stois = [stoi(speech, with_noise(speech, snr), RATE) for snr in (30, 10, 0)]
    pesqs = [pesq_wideband(speech, with_noise(speech, snr), RATE) for snr in (30, 10, 0)]
    assert 1.0 > stois[0] > stois[1] > stois[2]
    assert 4.0 > pesqs[0] > pesqs[1] > pesqs[2]


def test_aligned_metrics_accept_another_rate_and_codec_padding(speech):
    at_24k = resample(speech, RATE, 24000)
    padded = np.concatenate([at_24k, np.zeros(600, np.float32)])  # one WavTokenizer hop of padding
    assert stoi(at_24k, padded, 24000) == pytest.approx(1.0, abs=1e-6)
    assert mel_l1(at_24k, padded, 24000) == pytest.approx(0.0, abs=1e-6)


def test_aligned_metrics_refuse_clips_that_are_not_aligned(speech):
    with pytest.raises(Unmeasurable, match="not time-aligned"):
        stoi(speech, clip("arctic_a0009.wav"), RATE)


def test_pesq_reports_silence_and_short_clips_instead_of_crashing(speech):
    with pytest.raises(Unmeasurable, match="silence"):
        pesq_wideband(speech, np.zeros_like(speech), RATE)
    with pytest.raises(Unmeasurable, match="No utterances detected"):
        pesq_wideband(np.zeros_like(speech), speech, RATE)
    with pytest.raises(Unmeasurable, match="1/4 of a second"):
        pesq_wideband(speech[:2000], speech[:2000], RATE)


def test_stoi_reports_too_little_speech(speech):
    with pytest.raises(Unmeasurable, match="speech frames"):
        stoi(speech[:3000], speech[:3000], RATE)


def test_log_mel_shape_and_mel_l1_grows_with_noise(speech):
    assert log_mel(speech, RATE).shape == (len(speech) // 160 + 1, 80)
    assert mel_l1(speech, speech, RATE) == 0.0
    assert 0 < mel_l1(speech, with_noise(speech, 30), RATE) < mel_l1(speech, with_noise(speech, 0), RATE)


def _dtw_brute_force(cost: np.ndarray) -> float:
    n, m = cost.shape
    total = np.full((n, m), np.inf)
    length = np.zeros((n, m), int)
    for i in range(n):
        for j in range(m):
            if i == j == 0:
                total[i, j], length[i, j] = cost[0, 0], 1
                continue
            previous = [(a, b) for a, b in ((i - 1, j - 1), (i - 1, j), (i, j - 1)) if a >= 0 and b >= 0]
            a, b = min(previous, key=lambda p: total[p])
            total[i, j], length[i, j] = total[a, b] + cost[i, j], length[a, b] + 1
    return total[-1, -1] / length[-1, -1]


def test_dtw_matches_the_textbook_recursion_and_returns_a_monotone_path():
    rng = np.random.default_rng(1)
    for n, m in ((1, 1), (1, 5), (7, 3), (12, 17)):
        cost = rng.random((n, m))
        mean_cost, path = dtw(cost)
        assert mean_cost == pytest.approx(_dtw_brute_force(cost))
        assert tuple(path[0]) == (0, 0) and tuple(path[-1]) == (n - 1, m - 1)
        steps = np.diff(path, axis=0)
        assert np.all((steps >= 0) & (steps <= 1)) and np.all(steps.sum(axis=1) >= 1)
        assert mean_cost == pytest.approx(cost[path[:, 0], path[:, 1]].mean())


def test_dtw_distances_ignore_tempo_but_not_content(speech):
    slower = time_stretched(speech, 0.8)
    assert len(slower) / len(speech) == pytest.approx(1.25, abs=0.01)
    other = clip("arctic_a0009.wav")
    for distance in (dtw_log_mel_distance, dtw_mel_cepstral_distortion):
        assert distance(speech, speech, RATE) == 0.0
        assert 2 * distance(speech, slower, RATE) < distance(speech, other, RATE)


def test_duration_ratio_raw_and_on_the_speech_span(speech):
    short_pause, long_pause = np.zeros(RATE // 4, np.float32), np.zeros(RATE, np.float32)
    reference = np.concatenate([short_pause, speech, short_pause])
    padded = np.concatenate([long_pause, speech, long_pause])
    assert duration_ratio(reference, padded, RATE) == pytest.approx(len(padded) / len(reference))
    assert duration_ratio(reference, padded, RATE, speech_only=True) == pytest.approx(1.0, abs=0.001)
    assert duration_ratio(speech, time_stretched(speech, 0.8), RATE, speech_only=True) == pytest.approx(1.25, abs=0.05)


def test_real_time_factor():
    assert real_time_factor(0.5, 2.0) == 0.25
    with pytest.raises(ValueError):
        real_time_factor(1.0, 0.0)
