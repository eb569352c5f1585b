"""AISHELL-3: `<subset>/content.txt` (`<utt>.wav<TAB>字 pin1 字 pin2 ...`) and `<subset>/wav/<speaker>/<utt>.wav`.

    python -c "from stages.importers.aishell3 import items; print(next(items('tests/fixtures/corpora/aishell3')))"

The transcript alternates characters and their pinyin; the TTS input is the characters alone.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

from stages.importers import CorpusItem, decode_line

SPEAKER_ID_LENGTH = 7  # SSB0005 in SSB00050001.wav


def items(root: Path) -> Iterator[CorpusItem]:
    contents = sorted(root.rglob("content.txt"))
    if not contents:
        raise FileNotFoundError(f"{root}: AISHELL-3 layout needs <subset>/content.txt")
    for content in contents:
        for number, raw in enumerate(content.read_bytes().splitlines(), start=1):
            line = decode_line(raw)
            name = (line or raw.decode("ascii", "replace")).split("\t")[0].strip()
            if not name:
                continue
            utt_id = name.removesuffix(".wav")
            speaker = utt_id[:SPEAKER_ID_LENGTH]
            audio = str(content.parent / "wav" / speaker / name)
            if line is None:
                yield CorpusItem(utt_id, speaker, "zh", None, audio,
                                 problem=f"undecodable_transcript: {content.name} line {number} is not valid UTF-8")
                continue
            tokens = line.split("\t", 1)[1].split() if "\t" in line else []
            yield CorpusItem(utt_id, speaker, "zh", "".join(tokens[0::2]), audio)
