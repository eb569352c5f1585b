"""Audio conditioning numerics on real speech (CMU ARCTIC) and on every input format we accept."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from conftest import ARCTIC, FIXTURES
from stages.common.audio import (Unusable, condition, decode_flac, encode_flac, loudness_lufs, read_audio, resample,
                          to_mono, trim_silence)
from stages.config.audio import AudioConfig

CFG = AudioConfig()


def arctic(name="arctic_a0007.wav"):
    return read_audio(str(ARCTIC / name))


def test_downmix_and_resample_match_wavtokenizer_convert_audio():
    samples, rate = read_audio(str(FIXTURES / "wavtokenizer" / "test_stereo_16k_2s.wav"))
    ours = resample(to_mono(samples), rate, 24000)
    official = np.load(FIXTURES / "wavtokenizer" / "ref_stereo16k_converted_24k_mono.npy")[0]
    np.testing.assert_allclose(ours, official, atol=1e-6)


def test_resampling_keeps_frequency_and_amplitude():
    rate = 16000
    sine = 0.5 * np.sin(2 * np.pi * 1000 * np.arange(rate) / rate).astype(np.float32)
    out = resample(sine, rate, 24000)
    assert len(out) == 24000
    spectrum = np.abs(np.fft.rfft(out[2400:-2400] * np.hanning(19200)))
    assert abs(np.argmax(spectrum) * 24000 / 19200 - 1000) < 2
    assert abs(np.abs(out[2400:-2400]).max() - 0.5) < 0.005


@pytest.mark.parametrize("rate", [16000, 24000])
def test_loudness_equals_torchaudios_bs1770(rate):
    import torch
    import torchaudio.functional as AF

    speech = resample(arctic()[0][0], 16000, rate)
    short = speech[: rate // 5]  # under one 400 ms block: zero-padded to one
    for clip in (speech, 0.1 * speech, short):
        padded = np.pad(clip, (0, max(0, int(0.4 * rate) - len(clip))))
        reference = float(AF.loudness(torch.from_numpy(padded.astype(np.float32))[None], rate))
        assert abs(loudness_lufs(clip, rate) - reference) < 0.01
    assert loudness_lufs(np.zeros(rate, dtype=np.float32), rate) == float("-inf")


@pytest.mark.parametrize("name", ["arctic_a0007.wav", "arctic_a0009.wav"])
def test_real_speech_is_24k_mono_at_target_loudness(name):
    samples, rate = arctic(name)
    assert rate == 16000 and samples.shape[0] == 1
    clip = condition(samples, rate, CFG)
    assert clip.sample_rate == 24000 and clip.samples.ndim == 1 and clip.samples.dtype == np.float32
    assert abs(loudness_lufs(clip.samples, 24000) - CFG.loudness_lufs) < 0.2
    assert np.abs(clip.samples).max() <= CFG.peak_limit + 1e-6
    assert -40 < clip.source_loudness_lufs < -10
    source_seconds = samples.shape[1] / rate
    assert 0.5 * source_seconds < len(clip.samples) / 24000 <= source_seconds + 1e-3


def test_silence_padding_is_trimmed_to_the_margin():
    samples, rate = arctic()
    speech = condition(samples, rate, CFG).samples
    padded = np.pad(samples, ((0, 0), (rate, rate)))
    trimmed = condition(padded, rate, CFG).samples
    # The recording's own noise floor is within 40 dB of its peak, so only the added silence goes,
    # up to the margin kept on each side.
    assert len(speech) <= len(trimmed) <= len(speech) + (2 * CFG.trim_margin_seconds + 0.03) * 24000


def test_trim_keeps_a_margin_before_the_first_voiced_frame():
    rate = 24000
    x = np.zeros(rate * 2, np.float32)
    x[rate:rate + 4800] = 0.3 * np.sin(np.arange(4800) / 5)
    out = trim_silence(x, rate, 40.0, 0.1)
    assert abs(len(out) - (4800 + 2 * 2400)) < 600


@pytest.mark.parametrize("rate", [8000, 16000, 22050, 44100, 48000, 96000])
@pytest.mark.parametrize("subtype, fmt", [("PCM_U8", "WAV"), ("PCM_16", "WAV"), ("PCM_24", "WAV"),
                                          ("FLOAT", "WAV"), ("PCM_16", "FLAC"), ("VORBIS", "OGG")])
def test_every_accepted_format_converts(tmp_path, rate, subtype, fmt):
    samples, source_rate = arctic()
    mono = resample(samples[0], source_rate, rate)
    channels = 6 if rate == 48000 else 2 if rate == 44100 else 1
    data = np.stack([mono] * channels, axis=1)
    path = tmp_path / f"clip.{fmt.lower()}"
    sf.write(path, data, rate, subtype=subtype, format=fmt)
    decoded, decoded_rate = read_audio(str(path))
    assert decoded.shape[0] == channels and decoded_rate == rate
    clip = condition(decoded, decoded_rate, CFG)
    reference = condition(samples, source_rate, CFG).samples
    n = min(len(reference), len(clip.samples))
    assert abs(len(reference) - len(clip.samples)) < 0.05 * 24000
    # 8 kHz and 8-bit or Vorbis lose detail, but the same speech must come out, level-matched.
    corr = np.corrcoef(reference[:n], clip.samples[:n])[0, 1]
    assert corr > (0.6 if rate == 8000 or fmt == "OGG" or subtype == "PCM_U8" else 0.95)
    assert abs(loudness_lufs(clip.samples, 24000) - CFG.loudness_lufs) < 0.5


def test_flac_round_trip_is_16_bit_exact():
    clip = condition(*arctic(), CFG).samples
    decoded, rate = decode_flac(encode_flac(clip, 24000))
    assert rate == 24000
    np.testing.assert_allclose(decoded, clip, atol=1 / 32768)


@pytest.mark.parametrize("samples, code", [
    (np.zeros((1, 24000), np.float32), "all_silent"),
    (np.full((1, 24000), 1e-6, np.float32), "all_silent"),
    (np.sin(np.arange(2400, dtype=np.float32))[None] * 0.3, "too_short"),
    (np.sin(np.arange(24000 * 21, dtype=np.float32))[None] * 0.3, "too_long"),
])
def test_unusable_clips_raise_with_a_reason_code(samples, code):
    with pytest.raises(Unusable) as error:
        condition(samples, 24000, CFG)
    assert error.value.code == code


def test_non_finite_and_empty_files_are_unusable(tmp_path):
    bad = np.zeros(16000, np.float32)
    bad[100] = np.nan
    sf.write(tmp_path / "nan.wav", bad, 16000, subtype="FLOAT")
    with pytest.raises(Unusable, match="non_finite"):
        read_audio(str(tmp_path / "nan.wav"))
    (tmp_path / "junk.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk")
    with pytest.raises(Unusable, match="corrupt"):
        read_audio(str(tmp_path / "junk.wav"))
