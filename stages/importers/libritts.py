"""LibriTTS and LibriTTS-R: `<speaker>/<chapter>/<utt>.wav` beside `<utt>.normalized.txt`, under any subset folders.

    python -c "from stages.importers.libritts import items; print(next(items('tests/fixtures/corpora/libritts')))"
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

from stages.importers import CorpusItem, read_text_file

SUFFIX = ".normalized.txt"


def items(root: Path) -> Iterator[CorpusItem]:
    for transcript in sorted(root.rglob(f"*{SUFFIX}")):
        utt_id = transcript.name[: -len(SUFFIX)]
        text, problem = read_text_file(transcript)
        speaker = transcript.parent.parent.name
        yield CorpusItem(utt_id, speaker, "en", text, str(transcript.with_name(f"{utt_id}.wav")), problem=problem)
