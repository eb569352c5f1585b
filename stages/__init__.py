"""MiniMind-TTS: one module per pipeline stage, each a plain function behind a thin `python -m` CLI."""

import sys

from stages.atomic import report_output_errors

sys.excepthook = report_output_errors  # a full disk or read-only output folder reads as one line, not a traceback
