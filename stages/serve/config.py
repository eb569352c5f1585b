"""The server's limits: one frozen dataclass, each default with its reason; `minimind-tts serve --help` lists them.

    python -c "from stages.serve.config import ServeConfig; print(ServeConfig())"
"""

from __future__ import annotations

from dataclasses import dataclass

from stages.config.base import setting


@dataclass(frozen=True)
class ServeConfig:
    host: str = setting("127.0.0.1", "address to listen on; loopback by default, so serving never exposes a model "
                        "to the network by accident (0.0.0.0 for every interface).")
    port: int = setting(8000, "TCP port (uvicorn's own default).", minimum=1, maximum=65535)
    concurrency: int = setting(
        2, "syntheses running at once, each in its own worker thread: on 2 CPU cores two one-thread syntheses "
        "keep both busy, and more only slow each other down.", minimum=1)
    queue_size: int = setting(
        4, "requests waiting for a free synthesis; past it a request gets 503 with Retry-After at once, rather "
        "than waiting longer than a client would.", minimum=0)
    retry_after_seconds: int = setting(
        2, "the Retry-After a 503 carries: about one short sentence's synthesis on a CPU.", minimum=1)
    max_text_chars: int = setting(
        2000, "longest `input` accepted (OpenAI's own limit is 4096); about two minutes of speech, so one "
        "request cannot hold a slot for long.", minimum=1)
    max_prompt_seconds: float = setting(
        20.0, "longest voice prompt (zero-shot); prompts are a few seconds, and its codes share the LM's "
        "context with the text.", minimum=0.1)
    max_upload_mib: float = setting(
        16.0, "largest upload part (the prompt WAV): 20 s of 48 kHz stereo float is 7.3 MiB, so any real prompt "
        "fits and a runaway upload is refused before it is decoded.", minimum=0.1)
    threads: int = setting(1, "torch intra-op threads of the server process, shared by its syntheses: a small "
                           "LM's matrices gain little from more, and concurrency already uses the cores.", minimum=1)
