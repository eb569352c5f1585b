"""`minimind-tts serve`: load a model and its codec once, then answer HTTP until stopped (Ctrl-C).

    minimind-tts serve --model results/demo/sft/model --codec-config assets/codec/demo-75hz.yaml \
        --codec-checkpoint assets/codec/demo-75hz.ckpt [--host 0.0.0.0] [--port 8000] [--concurrency 2]

Every ServeConfig field is a flag (--max-text-chars, --queue-size, ...), its default and reason in --help.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
from typing import get_type_hints

import uvicorn

from stages.common.cli import start
from stages.config import ConfigError, from_dict
from stages.serve.config import ServeConfig
from stages.runtime.arguments import add_synthesis_arguments, load_synthesizer

log = logging.getLogger(__name__)


def add_config_flags(parser: argparse.ArgumentParser, cls: type) -> None:
    """One --flag per field of the dataclass; a flag left out keeps the field's default."""
    hints = get_type_hints(cls)
    group = parser.add_argument_group("server limits")
    for field in dataclasses.fields(cls):
        group.add_argument(f"--{field.name.replace('_', '-')}", dest=field.name, type=hints[field.name],
                           default=None, help=f"{field.metadata['doc']} (default: {field.default})")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="minimind-tts serve", description=__doc__.split("\n\n")[0])
    add_synthesis_arguments(parser)
    add_config_flags(parser, ServeConfig)
    args = parser.parse_args(argv)
    given = {f.name: getattr(args, f.name) for f in dataclasses.fields(ServeConfig) if getattr(args, f.name) is not None}
    try:
        config = from_dict(ServeConfig, given, "serve")
    except ConfigError as e:  # "serve.queue_size: ..." -> "--queue-size: ...", the flag the user typed
        key, _, reason = str(e).partition(":")
        parser.error(f"--{key.removeprefix('serve.').replace('_', '-')}:{reason}")
    start(threads=config.threads)
    from stages.serve.app import create_app  # after start(): torch's threads are set before the model loads

    tts = load_synthesizer(args)
    log.info("serving %s (voices: %s) at http://%s:%d/", args.model, ", ".join(tts.vocab.speakers) or "none",
             config.host, config.port)
    uvicorn.run(create_app(tts, config), host=config.host, port=config.port, log_level="info")


if __name__ == "__main__":
    main()
