"""DNSMOS (speechmos' ONNX models): real speech scores higher than noise on every axis."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from conftest import ARCTIC
from stages.metrics.mos import dnsmos


def test_clean_speech_scores_higher_than_noise():
    speech, rate = sf.read(ARCTIC / "arctic_a0007.wav", dtype="float32")
    noise = np.random.default_rng(0).normal(0, 0.1, len(speech)).astype(np.float32)
    clean, noisy = dnsmos(speech, rate), dnsmos(noise, rate)
    assert set(clean) == {"ovrl", "sig", "bak", "p808"}
    assert all(1.0 <= v <= 5.0 for v in (*clean.values(), *noisy.values()))
    assert clean["ovrl"] > noisy["ovrl"] + 1.0
    assert clean["sig"] > noisy["sig"] and clean["bak"] > noisy["bak"]


def test_empty_clip_is_rejected():
    with pytest.raises(ValueError):
        dnsmos(np.zeros(0, np.float32), 16000)
