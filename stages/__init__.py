"""MiniMind-TTS: one module per pipeline stage, each a plain function behind a thin `python -m` CLI."""
