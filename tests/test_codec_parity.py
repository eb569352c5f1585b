"""Our WavTokenizer reproduces the official code's outputs on the reference fixture.

    PYTHONPATH=. .venv/bin/python -m pytest tests/test_codec_parity.py -q

The fixture (tests/fixtures/wavtokenizer/README.md) holds a tiny checkpoint in the official layout and
what the official code computed from it. Tolerances are the ones its README derives.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from stages.codec import load_codec
from stages.codec.__main__ import main as codec_cli
from stages.codec.audio_io import read_for_codec

FIXTURE = Path(__file__).parent / "fixtures" / "wavtokenizer"
CONFIG = FIXTURE / "wavtokenizer_fixture_frame40_tiny.yaml"
CHECKPOINT = FIXTURE / "wavtokenizer_fixture_frame40_tiny.ckpt"
REPO = Path(__file__).resolve().parents[1]


def ref(name: str) -> np.ndarray:
    return np.load(FIXTURE / name)


@pytest.fixture(scope="module")
def codec():
    return load_codec(CONFIG, CHECKPOINT)


@pytest.fixture(scope="module")
def chirp() -> torch.Tensor:
    return read_for_codec(FIXTURE / "test_chirp_noise_24k_2s.wav", 24000)


def test_codec_reports_its_rates(codec):
    assert (codec.sample_rate, codec.hop_length, codec.frame_rate) == (24000, 600, 40.0)


def test_encoder_output_matches_official(codec, chirp):
    with torch.inference_mode():
        latents = codec.latents(chirp)
    np.testing.assert_allclose(latents.numpy(), ref("ref_encoder_out.npy"), rtol=0, atol=1e-4)


def test_codes_equal_official(codec, chirp):
    codes, code_lengths = codec.encode(chirp)
    assert code_lengths.tolist() == [80]
    np.testing.assert_array_equal(codes.numpy(), ref("ref_codes.npy")[0])


def test_features_are_the_official_codebook_rows(codec):
    features = codec.features(torch.from_numpy(ref("ref_codes.npy")[0]))
    np.testing.assert_array_equal(features[:, :, :10].numpy(), ref("ref_features_first10.npy"))


def test_decoded_audio_matches_official(codec):
    audio = codec.decode(torch.from_numpy(ref("ref_codes.npy")[0]))
    np.testing.assert_allclose(audio.numpy(), ref("ref_decoded.npy"), rtol=0, atol=1e-5)


def test_decoding_uses_adaln_row_zero(codec):
    other_row = codec.decode(torch.from_numpy(ref("ref_codes.npy")[0]), bandwidth_id=1)
    assert np.abs(other_row.numpy() - ref("ref_decoded.npy")).max() > 1e-3


def test_stereo_16k_is_converted_encoded_and_decoded_like_official(codec):
    converted = read_for_codec(FIXTURE / "test_stereo_16k_2s.wav", 24000)
    np.testing.assert_allclose(converted.numpy(), ref("ref_stereo16k_converted_24k_mono.npy"), rtol=0, atol=1e-5)
    codes, _ = codec.encode(converted)
    np.testing.assert_array_equal(codes.numpy(), ref("ref_stereo16k_codes.npy")[0])
    audio = codec.decode(codes)
    np.testing.assert_allclose(audio.numpy(), ref("ref_stereo16k_decoded.npy"), rtol=0, atol=1e-5)


def run_cli(*args: object) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "stages.codec", *map(str, args)], cwd=REPO,
                          capture_output=True, text=True, timeout=120)


def test_cli_encode_then_decode_reproduces_official_files(tmp_path):
    codes_path, audio_npy, audio_wav = tmp_path / "codes.npy", tmp_path / "audio.npy", tmp_path / "audio.wav"
    result = run_cli("encode", CONFIG, CHECKPOINT, FIXTURE / "test_stereo_16k_2s.wav", codes_path)
    assert result.returncode == 0, result.stderr
    codes = np.load(codes_path)
    assert codes.dtype == np.int64 and codes.shape == (1, 1, 80)
    np.testing.assert_array_equal(codes, ref("ref_stereo16k_codes.npy"))

    result = run_cli("decode", CONFIG, CHECKPOINT, codes_path, audio_npy)
    assert result.returncode == 0, result.stderr
    audio = np.load(audio_npy)
    assert audio.dtype == np.float32 and audio.shape == (1, 48000)
    np.testing.assert_allclose(audio, ref("ref_stereo16k_decoded.npy"), rtol=0, atol=1e-5)

    result = run_cli("decode", CONFIG, CHECKPOINT, codes_path, audio_wav)
    assert result.returncode == 0, result.stderr
    wav, rate = sf.read(audio_wav, dtype="float32")
    assert rate == 24000 and sf.info(audio_wav).subtype == "PCM_16"
    np.testing.assert_allclose(wav, ref("ref_stereo16k_decoded.npy")[0], rtol=0, atol=1 / 32768 + 1e-5)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["audio.npy", "audio.wav", "codes.npy"]  # no temp files left


def test_cli_rejects_out_of_range_codes(tmp_path, capsys):
    bad = tmp_path / "bad.npy"
    np.save(bad, np.array([[[0, 4096]]], dtype=np.int64))
    assert codec_cli(["decode", str(CONFIG), str(CHECKPOINT), str(bad), str(tmp_path / "out.wav")]) == 2
    assert "0..4095" in capsys.readouterr().err
    assert not (tmp_path / "out.wav").exists()
