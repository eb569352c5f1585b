"""resemblyzer speaker similarity on two real ARCTIC speakers (awb, male; a0009's speaker, female)."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from conftest import ARCTIC
from stages.metrics.common import Unmeasurable
from stages.metrics.speaker import cosine_similarity, embed, voice_embedding

RATE = 16000


@pytest.fixture(scope="module")
def clips():
    male, _ = sf.read(ARCTIC / "arctic_a0007.wav", dtype="float32")
    female, _ = sf.read(ARCTIC / "arctic_a0009.wav", dtype="float32")
    noisy = (male + np.random.default_rng(0).normal(0, 0.01, male.shape)).astype(np.float32)
    return male, female, noisy


def test_different_speakers_are_less_similar_than_the_same_clip_or_a_noisy_copy(clips):
    male, female, noisy = clips
    e_male, e_female, e_noisy = (embed(c, RATE) for c in clips)
    assert np.linalg.norm(e_male) == pytest.approx(1.0)
    assert cosine_similarity(e_male, e_male) == pytest.approx(1.0)
    between = cosine_similarity(e_male, e_female)
    assert between < cosine_similarity(e_male, e_noisy) - 0.1


def test_voice_reference_is_the_unit_mean_of_its_clips(clips):
    male, female, _ = clips
    halves = [male[: len(male) // 2], male[len(male) // 2:]]
    voice = voice_embedding(halves, RATE)
    assert np.linalg.norm(voice) == pytest.approx(1.0)
    assert cosine_similarity(voice, embed(male, RATE)) > cosine_similarity(voice, embed(female, RATE))


def test_silence_and_near_silence_have_no_speaker():
    with pytest.raises(Unmeasurable, match="digital silence"):
        embed(np.zeros(2 * RATE, np.float32), RATE)
    hum = 1e-4 * np.random.default_rng(0).normal(size=2 * RATE).astype(np.float32)
    with pytest.raises(Unmeasurable, match="voice activity detector"):
        embed(hum, RATE)
