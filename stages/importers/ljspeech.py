"""LJSpeech: `metadata.csv` (`id|text|normalized text`, no header) beside `wavs/<id>.wav`; one speaker.

    python -c "from stages.importers.ljspeech import items; print(next(items('tests/fixtures/corpora/ljspeech')))"
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

from stages.importers import CorpusItem, decode_line


def items(root: Path) -> Iterator[CorpusItem]:
    metadata = root / "metadata.csv"
    if not metadata.exists():
        raise FileNotFoundError(f"{metadata}: LJSpeech layout needs metadata.csv")
    for number, raw in enumerate(metadata.read_bytes().splitlines(), start=1):
        line = decode_line(raw)
        if line is None:
            utt_id = raw.split(b"|")[0].decode("ascii", "replace") or f"line{number}"
            yield CorpusItem(utt_id, "ljspeech", "en", None, str(root / "wavs" / f"{utt_id}.wav"),
                             problem=f"undecodable_transcript: metadata.csv line {number} is not valid UTF-8")
            continue
        if not line.strip():
            continue
        fields = line.split("|")
        utt_id = fields[0]
        # The third column spells out numbers and abbreviations; older copies lack it.
        text = fields[2] if len(fields) > 2 and fields[2].strip() else (fields[1] if len(fields) > 1 else "")
        yield CorpusItem(utt_id, "ljspeech", "en", text, str(root / "wavs" / f"{utt_id}.wav"))
