"""VCTK 0.92: `txt/<speaker>/<utt>.txt` and `wav48_silence_trimmed/<speaker>/<utt>_<mic>.flac`.

    python -c "from stages.importers.vctk import items; print(next(items('tests/fixtures/corpora/vctk')))"
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

from stages.importers import CorpusItem, read_text_file


def items(root: Path, mic: str = "mic1") -> Iterator[CorpusItem]:
    if not (root / "txt").is_dir():
        raise FileNotFoundError(f"{root / 'txt'}: VCTK layout needs txt/ and wav48_silence_trimmed/")
    for transcript in sorted((root / "txt").glob("*/*.txt")):
        speaker, utt_id = transcript.parent.name, transcript.stem
        text, problem = read_text_file(transcript)
        audio = root / "wav48_silence_trimmed" / speaker / f"{utt_id}_{mic}.flac"
        yield CorpusItem(utt_id, speaker, "en", text, str(audio), problem=problem)
