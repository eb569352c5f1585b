"""Corpus importers: each turns one corpus layout into `CorpusItem`s, and nothing else.

    python -c "from stages.importers import import_corpus; print(next(import_corpus('ljspeech', 'tests/fixtures/corpora/ljspeech')))"

Every importer has the same shape (modelled on lhotse's recipes): walk the layout, yield one item per
transcript line or audio file, and report what it cannot read as an item with a `problem` instead of
raising, so one bad line never loses the rest of the corpus. Probing audio and quarantining is the
`prepare` stage's job, not the importers'.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Optional


@dataclass(frozen=True)
class CorpusItem:
    utt_id: str
    speaker: str
    language: str
    text: Optional[str]
    source: str
    split: Optional[str] = None    # only corpora with a fixed split (the demo) set it
    problem: Optional[str] = None  # a quarantine reason found while reading the transcript


def decode_line(raw: bytes) -> Optional[str]:
    """A transcript line as text, or None if it is not valid UTF-8."""
    try:
        return raw.decode("utf-8").rstrip("\r\n")
    except UnicodeDecodeError:
        return None


def read_text_file(path: Path) -> tuple[Optional[str], Optional[str]]:
    """(text, problem) of a one-utterance transcript file."""
    text = decode_line(path.read_bytes().strip())
    return (None, "undecodable_transcript: not valid UTF-8") if text is None else (text, None)


def _registry() -> dict[str, Callable[..., Iterator[CorpusItem]]]:
    from stages.importers import aishell3, libritts, ljspeech, table, vctk

    return {
        "demo": table.demo_items,
        "csv": table.csv_items,
        "jsonl": table.jsonl_items,
        "ljspeech": ljspeech.items,
        "libritts": libritts.items,
        "vctk": vctk.items,
        "aishell3": aishell3.items,
    }


def listing_digest(root: str | Path) -> str:
    """sha256 of every file's relative path and size under `root`: what identifies a corpus folder.

    Snakemake cannot hash a folder input, so the workflow passes this as a param instead: adding, removing
    or resizing a file reruns `prepare` and changes the between-workflow cache key of everything after it.
    Sizes, not mtimes, so two copies of one corpus share cache entries.
    """
    import hashlib
    import os

    root = Path(root)
    digest = hashlib.sha256()
    for folder, dirs, files in os.walk(root):
        dirs.sort()
        for name in sorted(files):
            path = Path(folder) / name
            digest.update(f"{path.relative_to(root).as_posix()}\t{path.stat().st_size}\n".encode())
    return digest.hexdigest()


def import_corpus(fmt: str, path: str | Path, language: Optional[str] = None,
                  vctk_mic: str = "mic1") -> Iterator[CorpusItem]:
    """All items of the corpus at `path` in layout `fmt`, in a deterministic order."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"corpus path {path} does not exist")
    importer = _registry()[fmt]
    kwargs = {"mic": vctk_mic} if fmt == "vctk" else {}
    for item in importer(path, **kwargs):
        yield item if language is None else CorpusItem(**{**item.__dict__, "language": language})
