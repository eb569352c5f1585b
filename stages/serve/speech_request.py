"""A speech request's fields checked one by one; every refusal names the field it is about.

    python -c "from stages.serve.speech_request import parse_fields; from stages.serve.config import ServeConfig; \
print(parse_fields({'input': 'Hi.', 'voice': 'awb'}, ('awb',), ServeConfig()))"

The fields are OpenAI's `/v1/audio/speech` (`model`, `input`, `voice`, `response_format`, `speed`) and
ours: `language` (auto, en, zh), `stream` (false: one whole file, with its RTF in the headers) and, in a
multipart form, `prompt_wav` + `prompt_text`, a voice to continue (zero-shot). An unknown field is refused
rather than ignored, so a misspelt option never silently does nothing.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from typing import Any, Optional, Sequence

import numpy as np
import soundfile as sf

from stages.common.audio import resample, to_mono
from stages.serve.audio_formats import FORMATS, STREAMABLE
from stages.serve.config import ServeConfig

LANGUAGES = ("auto", "en", "zh")
FIELDS = ("model", "input", "voice", "response_format", "speed", "language", "stream", "prompt_text", "prompt_wav")


class BadRequest(Exception):
    """Input the server cannot speak; `param` is the field at fault (None for the body as a whole)."""

    def __init__(self, param: Optional[str], message: str):
        super().__init__(message)
        self.param = param


@dataclass(frozen=True)
class SpeechFields:
    input: str
    voice: Optional[str]       # a speaker token of the model; None: no speaker token
    response_format: str
    language: str
    stream: bool               # wav and pcm stream unless stream is false; flac is always one whole file
    prompt_text: str           # transcript of the voice prompt; "" without one


def _string(fields: dict, name: str, default: Optional[str]) -> Optional[str]:
    value = fields.get(name, default)
    if value is not None and not isinstance(value, str):
        raise BadRequest(name, f"{name}: expected a string, got {type(value).__name__} {value!r}")
    return value


def _boolean(fields: dict, name: str, default: bool) -> bool:
    value = fields.get(name, default)
    if isinstance(value, str) and value.lower() in ("true", "false"):  # form fields arrive as text
        return value.lower() == "true"
    if not isinstance(value, bool):
        raise BadRequest(name, f"{name}: expected true or false, got {value!r}")
    return value


def parse_fields(fields: dict[str, Any], voices: Sequence[str], config: ServeConfig) -> SpeechFields:
    """The request's fields (a JSON object or a form's text fields), checked against the model and the limits."""
    unknown = sorted(set(fields) - set(FIELDS))
    if unknown:
        raise BadRequest(unknown[0], f"{unknown[0]}: unknown field; known: {', '.join(FIELDS)}")
    _string(fields, "model", None)  # one model is served, whatever a client calls it ("tts-1" in most)

    text = _string(fields, "input", None)
    if text is None:
        raise BadRequest("input", "input: required (the text to speak)")
    if not text.strip():
        raise BadRequest("input", "input: empty or only whitespace; nothing to say")
    if len(text) > config.max_text_chars:
        raise BadRequest("input", f"input: {len(text)} characters, over this server's limit of "
                                  f"{config.max_text_chars}; split the text into several requests")

    voice = _string(fields, "voice", None) or None
    if voice is not None and voice not in voices:
        known = f"known: {', '.join(voices)}" if voices else "this model has no speaker tokens; leave voice out"
        raise BadRequest("voice", f"voice: {voice!r} is not a voice of this model ({known}; GET /v1/voices)")

    response_format = _string(fields, "response_format", "wav")
    if response_format not in FORMATS:
        raise BadRequest("response_format", f"response_format: {response_format!r} is not supported; "
                                            f"choose one of {', '.join(FORMATS)}")
    language = _string(fields, "language", "auto")
    if language not in LANGUAGES:
        raise BadRequest("language", f"language: {language!r} is not one of {', '.join(LANGUAGES)}")

    speed = fields.get("speed", 1.0)
    try:
        speed_value = float(speed)
    except (TypeError, ValueError):
        raise BadRequest("speed", f"speed: expected a number, got {speed!r}") from None
    if isinstance(speed, bool) or not math.isclose(speed_value, 1.0):
        raise BadRequest("speed", f"speed: only 1.0 is supported (got {speed!r}); the model speaks at its own pace")

    stream = _boolean(fields, "stream", True) and response_format in STREAMABLE
    prompt_text = (_string(fields, "prompt_text", "") or "").strip()
    return SpeechFields(text, voice, response_format, language, stream, prompt_text)


def read_prompt(data: bytes, sample_rate: int, max_seconds: float) -> np.ndarray:
    """An uploaded voice prompt as mono float32 at `sample_rate`; refused if unreadable, empty or too long."""
    try:
        info = sf.info(io.BytesIO(data))
    except (sf.LibsndfileError, RuntimeError, ValueError) as e:
        raise BadRequest("prompt_wav", f"prompt_wav: not a readable audio file ({e})") from None
    seconds = info.frames / info.samplerate if info.samplerate else 0.0
    if seconds > max_seconds:
        raise BadRequest("prompt_wav", f"prompt_wav: {seconds:.1f} s long, over this server's limit of "
                                       f"{max_seconds:g} s; a few seconds of the voice are enough")
    try:
        samples, rate = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, ValueError) as e:
        raise BadRequest("prompt_wav", f"prompt_wav: the audio cannot be decoded ({e})") from None
    if len(samples) == 0:
        raise BadRequest("prompt_wav", "prompt_wav: the file holds no samples")
    if not np.isfinite(samples).all():
        raise BadRequest("prompt_wav", "prompt_wav: the audio holds NaN or infinite samples")
    return resample(to_mono(np.ascontiguousarray(samples.T)), rate, sample_rate).astype(np.float32)
