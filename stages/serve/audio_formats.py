"""The response formats: 16-bit PCM in a WAV (streamable), raw (`pcm`) or FLAC (whole clips only).

    python -c "from stages.serve.audio_formats import streaming_wav_header; print(streaming_wav_header(24000)[:12])"

Every format carries the same int16 samples (`to_pcm16`), so a streamed WAV, a whole WAV and a FLAC of one
synthesis differ only where the audio itself does. A streamed WAV starts before its length is known: its
RIFF and data sizes are 0xFFFFFFFF, the usual marker of a WAV of unknown length, which readers take as
"until the end of the stream" (libsndfile, and so soundfile, does: tests/test_serve.py reads it).
"""

from __future__ import annotations

import io
import struct

import numpy as np
import soundfile as sf

FORMATS = ("wav", "flac", "pcm")
MEDIA_TYPES = {"wav": "audio/wav", "flac": "audio/flac", "pcm": "audio/pcm"}
STREAMABLE = ("wav", "pcm")
UNKNOWN_SIZE = 0xFFFFFFFF


def to_pcm16(audio: np.ndarray) -> bytes:
    """float32 in [-1, 1] -> little-endian int16 bytes, clipped, rounded to nearest."""
    return np.round(np.clip(audio, -1.0, 1.0) * 32767).astype("<i2").tobytes()


def wav_header(sample_rate: int, data_bytes: int = UNKNOWN_SIZE) -> bytes:
    """The 44-byte header of a mono 16-bit PCM WAV; without `data_bytes`, the streaming form of unknown length."""
    riff_size = UNKNOWN_SIZE if data_bytes == UNKNOWN_SIZE else 36 + data_bytes
    return (b"RIFF" + struct.pack("<I", riff_size) + b"WAVE"
            + b"fmt " + struct.pack("<IHHIIHH", 16, 1, 1, sample_rate, sample_rate * 2, 2, 16)
            + b"data" + struct.pack("<I", data_bytes))


def streaming_wav_header(sample_rate: int) -> bytes:
    return wav_header(sample_rate)


def whole_file(audio: np.ndarray, sample_rate: int, response_format: str) -> bytes:
    """One complete file of `audio` in `response_format`."""
    pcm = to_pcm16(audio)
    if response_format == "pcm":
        return pcm
    if response_format == "wav":
        return wav_header(sample_rate, len(pcm)) + pcm
    if response_format == "flac":
        buffer = io.BytesIO()
        sf.write(buffer, np.frombuffer(pcm, "<i2"), sample_rate, format="FLAC", subtype="PCM_16")
        return buffer.getvalue()
    raise ValueError(f"unknown response format {response_format!r}; known: {', '.join(FORMATS)}")
