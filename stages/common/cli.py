"""The prelude every stage CLI shares: one-line storage errors, logging, threads and its config section.

    args = parser.parse_args(argv)
    start(threads=args.threads)
    cfg = config_section(AudioConfig, args.config_json, "audio")

Set here, at a CLI's start, rather than at package import, so importing `stages` from a notebook, a test
or another program leaves that program's exception hook and logging as they were.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path
from typing import Optional, Sequence, TypeVar

from stages.common.atomic import report_output_errors
from stages.config import from_dict

LOG_FORMAT = "%(asctime)s %(name)s %(levelname)s %(message)s"
T = TypeVar("T")


def start(threads: Optional[int] = None) -> None:
    """Install the one-line storage error hook, log at INFO (WARNING on all but rank 0), set torch's threads."""
    sys.excepthook = report_output_errors  # a full disk or read-only folder reads as one line, not a traceback
    main_process = os.environ.get("RANK", "0") == "0"
    logging.basicConfig(level=logging.INFO if main_process else logging.WARNING, format=LOG_FORMAT)
    if threads:
        import torch  # not at module import: the torch-free stages (prepare, fit_tokenizer) never pay for it

        torch.set_num_threads(threads)


def config_section(cls: type[T], config_json: str, section: str) -> T:
    """The config section `section` passed by the rule as JSON, validated; errors name `section.key`."""
    return from_dict(cls, json.loads(config_json), section)


def named_paths(items: Sequence[str], option: str) -> dict[str, Path]:
    """`NAME=PATH` arguments (the rules pass each model's folder so) as {name: path}, in the order given."""
    bad = [item for item in items if "=" not in item or item.startswith("=")]
    if bad:
        raise SystemExit(f"{option}: expected NAME=PATH, got {bad}")
    return {name: Path(path) for name, path in (item.split("=", 1) for item in items)}
