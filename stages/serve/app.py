"""The HTTP server: OpenAI's `/v1/audio/speech` (streamed), `/v1/voices`, `/health` and a page at `/`.

    minimind-tts serve --model results/demo/sft/model --codec-config assets/codec/demo-75hz.yaml \
        --codec-checkpoint assets/codec/demo-75hz.ckpt
    python -c "from stages.serve.app import create_app"   # create_app(Synthesizer(...), ServeConfig()) for tests

The event loop only parses, admits and sends; every torch call runs in a worker thread. A request first
waits for one of `concurrency` slots (in a queue of `queue_size`, past which it gets 503 and Retry-After);
a streamed one holds its slot until its last chunk is sent or its client goes away, and since the
synthesis advances only as chunks are taken, a client that leaves stops the generation at the next chunk.
"""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path
from typing import AsyncIterator, Iterator, Optional

import anyio
import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from starlette.formparsers import MultiPartException
from starlette.types import Receive, Scope, Send

from stages.runtime import Synthesizer
from stages.serve.audio_formats import MEDIA_TYPES, streaming_wav_header, to_pcm16, whole_file
from stages.serve.config import ServeConfig
from stages.serve.slots import Busy, SynthesisSlots
from stages.serve.speech_request import BadRequest, SpeechFields, parse_fields, read_prompt

log = logging.getLogger(__name__)
PAGE = Path(__file__).parent / "page" / "index.html"


def error_body(message: str, param: Optional[str], kind: str = "invalid_request_error") -> dict:
    """OpenAI's error shape, which its clients turn into a readable exception."""
    return {"error": {"message": message, "type": kind, "param": param, "code": None}}


class StreamedSynthesis:
    """One streamed synthesis: its audio as bytes, and the slot it holds until it is closed."""

    def __init__(self, chunks: Iterator[np.ndarray], first: np.ndarray, header: bytes, slots: SynthesisSlots):
        self.chunks, self.first, self.header, self.slots = chunks, first, header, slots
        self.exhausted = False
        self.closed = False

    async def audio_bytes(self) -> AsyncIterator[bytes]:
        if self.header:
            yield self.header
        yield to_pcm16(self.first)
        while True:
            # A cancelled wait (the client left) still lets the thread finish its chunk before raising,
            # so `close` never meets a generator that is running.
            chunk = await anyio.to_thread.run_sync(next, self.chunks, None)
            if chunk is None:
                self.exhausted = True
                return
            yield to_pcm16(chunk)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.chunks.close()  # stops the LM where it is
            self.slots.release("completed" if self.exhausted else "cancelled")


class SlotStreamingResponse(StreamingResponse):
    """A StreamingResponse that closes its synthesis however the response ends: completed, the client gone
    (Starlette cancels the stream on http.disconnect), or never started."""

    def __init__(self, synthesis: StreamedSynthesis, **kwargs):
        self.synthesis = synthesis
        super().__init__(synthesis.audio_bytes(), **kwargs)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.synthesis.close()
            if not self.synthesis.exhausted:
                log.info("client left: streamed synthesis stopped")


async def _client_gone(request: Request) -> None:
    """Returns once the client has disconnected (the body has been read by then)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def _wait_for_slot(slots: SynthesisSlots, request: Request) -> bool:
    """Hold a slot (True), or find the client gone while queued (False); Busy when the queue is full."""
    turn = asyncio.ensure_future(slots.acquire())
    gone = asyncio.ensure_future(_client_gone(request))
    await asyncio.wait({turn, gone}, return_when=asyncio.FIRST_COMPLETED)
    client_left = gone.done()
    gone.cancel()
    if not turn.done():
        turn.cancel()
    await asyncio.gather(turn, gone, return_exceptions=True)
    if turn.cancelled():
        return False
    turn.result()  # raises Busy
    if client_left:  # the slot came in the same instant as the disconnect: pass it on
        slots.release("cancelled")
        return False
    return True


async def _read_fields(request: Request, config: ServeConfig) -> tuple[dict, Optional[bytes]]:
    """The request's fields and, from a multipart form, the prompt WAV's bytes."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type in ("multipart/form-data", "application/x-www-form-urlencoded"):
        try:
            form = await request.form(max_part_size=int(config.max_upload_mib * 2**20))
        except MultiPartException as e:
            raise BadRequest("prompt_wav", f"prompt_wav: the upload was refused ({e})") from None
        fields: dict = {}
        prompt_wav = None
        for name, value in form.multi_items():
            if isinstance(value, str):
                fields[name] = value
            elif name == "prompt_wav":
                data = await value.read()
                prompt_wav = data if (data or value.filename) else None  # a form's empty file input: no prompt
            else:
                raise BadRequest(name, f"{name}: a file was uploaded where text was expected")
        return fields, prompt_wav
    body = await request.body()
    try:
        fields = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise BadRequest(None, f"body: malformed JSON ({e}); send a JSON object such as "
                               '{"model": "tts-1", "input": "Hello.", "voice": "..."}') from None
    if not isinstance(fields, dict):
        raise BadRequest(None, f"body: expected a JSON object, got {type(fields).__name__}")
    if "prompt_wav" in fields:
        raise BadRequest("prompt_wav", "prompt_wav: a voice prompt is uploaded as a file in a multipart form, "
                                       "not in JSON")
    return fields, None


def _synthesis_error(error: ValueError) -> BadRequest:
    """The synthesizer's refusals (nothing to speak, a prompt that fills the context) as the field at fault."""
    param = "prompt_wav" if "prompt" in str(error) else "input"
    return BadRequest(param, f"{param}: {error}")


def create_app(tts: Synthesizer, config: ServeConfig) -> FastAPI:
    app = FastAPI(title="MiniMind-TTS", summary="Text to speech with a MiniMind-TTS model")
    slots = SynthesisSlots(config.concurrency, config.queue_size)
    voices = tuple(tts.vocab.speakers)
    page = PAGE.read_text(encoding="utf-8")
    audio_headers = {"X-Sample-Rate": str(tts.sample_rate), "X-Channels": "1", "X-Sample-Format": "s16le"}

    @app.exception_handler(BadRequest)
    async def bad_request(request: Request, error: BadRequest) -> JSONResponse:
        log.info("400 %s: %s", request.url.path, error)
        return JSONResponse(error_body(str(error), error.param), status_code=400)

    @app.get("/health")
    async def health() -> dict:
        counts = slots.counts()
        return {"status": "ok", "sample_rate": tts.sample_rate, "concurrency": config.concurrency,
                "queue_size": config.queue_size, "running": counts.running, "waiting": counts.waiting,
                "completed": counts.completed, "cancelled": counts.cancelled, "failed": counts.failed}

    @app.get("/v1/voices")
    async def list_voices() -> dict:
        return {"voices": list(voices)}

    @app.get("/", response_class=HTMLResponse)
    async def index() -> str:
        return page

    @app.post("/v1/audio/speech")
    async def speech(request: Request) -> Response:
        raw, prompt_wav = await _read_fields(request, config)
        fields = parse_fields(raw, voices, config)
        prompt = await _prompt(fields, prompt_wav)
        try:
            if not await _wait_for_slot(slots, request):
                return Response(status_code=499)  # nobody is listening; nginx's code for "client closed"
        except Busy as busy:
            log.info("503: %s", busy)
            return JSONResponse(error_body(f"server busy: {busy}; retry in {config.retry_after_seconds} s",
                                           None, "server_busy"),
                                status_code=503, headers={"Retry-After": str(config.retry_after_seconds)})
        try:
            if fields.stream:
                return await _streamed(fields, prompt)  # the response releases the slot when it ends
            response = await _whole(fields, prompt)
        except BaseException:
            slots.release("failed")
            raise
        slots.release("completed")
        return response

    async def _prompt(fields: SpeechFields, prompt_wav: Optional[bytes]) -> Optional[tuple[str, np.ndarray]]:
        if prompt_wav is None:
            if fields.prompt_text:
                raise BadRequest("prompt_text", "prompt_text: given without prompt_wav, the voice it transcribes")
            return None
        if not fields.prompt_text:
            raise BadRequest("prompt_text", "prompt_text: required with prompt_wav (what the prompt says)")
        samples = await anyio.to_thread.run_sync(read_prompt, prompt_wav, tts.sample_rate, config.max_prompt_seconds)
        return fields.prompt_text, samples

    async def _streamed(fields: SpeechFields, prompt) -> Response:
        chunks = tts.say_streaming(fields.input, fields.language, fields.voice, prompt)
        try:  # the first chunk before the headers, so a refusal is still a 400 and not a cut stream
            first = await anyio.to_thread.run_sync(next, chunks, None)
        except ValueError as e:
            chunks.close()
            raise _synthesis_error(e) from None
        except BaseException:
            chunks.close()
            raise
        header = streaming_wav_header(tts.sample_rate) if fields.response_format == "wav" else b""
        synthesis = StreamedSynthesis(chunks, first if first is not None else np.zeros(0, np.float32), header, slots)
        return SlotStreamingResponse(synthesis, media_type=MEDIA_TYPES[fields.response_format],
                                     headers=audio_headers)

    async def _whole(fields: SpeechFields, prompt) -> Response:
        try:
            spoken = await anyio.to_thread.run_sync(tts.say, fields.input, fields.language, fields.voice, prompt)
        except ValueError as e:
            raise _synthesis_error(e) from None
        body = await anyio.to_thread.run_sync(whole_file, spoken.audio, spoken.sample_rate, fields.response_format)
        return Response(body, media_type=MEDIA_TYPES[fields.response_format], headers={
            **audio_headers, "X-RTF": f"{spoken.rtf:.4f}",
            "X-Audio-Seconds": f"{len(spoken.audio) / spoken.sample_rate:.3f}",
            "X-Stop-Reasons": ",".join(spoken.stop_reasons)})

    return app
