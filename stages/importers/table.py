"""Generic tables: CSV with header `path,text,speaker[,language]` or JSONL with the same fields.

    python -c "from stages.importers.table import csv_items; print(next(csv_items('tests/fixtures/corpora/table.csv')))"

Paths are relative to the table file. Optional columns: `utt_id` (else made from the path) and
`split` (train/valid/eval; the demo corpus fixes its evaluation sentences this way).
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Iterator, Mapping

from stages.importers import CorpusItem, decode_line

REQUIRED = ("path", "text", "speaker")


def _item(row: Mapping, base: Path, where: str) -> CorpusItem:
    missing = [k for k in REQUIRED if k not in row]
    if missing:
        raise ValueError(f"{where}: missing field(s) {missing}; expected {list(REQUIRED)} (+ language, utt_id, split)")
    rel = Path(str(row["path"]))
    utt_id = str(row.get("utt_id") or "_".join(rel.with_suffix("").parts))
    text = row["text"] if row["text"] is None else str(row["text"])
    return CorpusItem(utt_id, str(row["speaker"]), str(row.get("language") or "en"), text,
                      str(base / rel), split=row.get("split") or None)


def demo_items(folder: Path) -> Iterator[CorpusItem]:
    """The demo corpus folder that the `demo_corpus` stage writes: its `transcripts.csv` table."""
    return csv_items(folder / "transcripts.csv")


def csv_items(table: Path) -> Iterator[CorpusItem]:
    raw = table.read_bytes()
    text = decode_line(raw)
    if text is None:
        raise ValueError(f"{table}: not valid UTF-8")
    for number, row in enumerate(csv.DictReader(io.StringIO(text)), start=2):
        yield _item(row, table.parent, f"{table}:{number}")


def jsonl_items(table: Path) -> Iterator[CorpusItem]:
    for number, raw in enumerate(table.read_bytes().splitlines(), start=1):
        line = decode_line(raw)
        if line is None:
            yield CorpusItem(f"{table.stem}_line{number}", "unknown", "en", None, str(table),
                             problem=f"undecodable_transcript: line {number} is not valid UTF-8")
            continue
        if line.strip():
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                yield CorpusItem(f"{table.stem}_line{number}", "unknown", "en", None, str(table),
                                 problem=f"undecodable_transcript: line {number} is not valid JSON ({e.msg})")
                continue
            yield _item(row, table.parent, f"{table}:{number}")
