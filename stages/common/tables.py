"""The tables stages hand to each other: fixed Arrow schemas, validated on write and on read.

    python -c "from stages.common.tables import MANIFEST; print(MANIFEST)"

Tables are the interface between stages: a stage reads its input through `read_table` (which checks
the columns it relies on) and writes through `write_table` (which checks types, nulls and unique
utt_ids, then writes atomically), so a malformed table fails where it is made, not three stages later.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Mapping

import pyarrow as pa
import pyarrow.parquet as pq

from stages.common.atomic import atomic_output

SPLITS = ("train", "valid", "eval")

# The columns that name an utterance and travel with it from the manifest through audio and codes.
IDENTITY = [
    ("utt_id", pa.string()),
    ("speaker", pa.string()),
    ("language", pa.string()),
    ("text", pa.string()),
    ("split", pa.string()),
]
IDENTITY_COLUMNS = tuple(name for name, _ in IDENTITY)

MANIFEST = pa.schema([
    *IDENTITY,
    ("source", pa.string()),
    ("duration", pa.float64()),
    ("source_sample_rate", pa.int32()),
    ("channels", pa.int32()),
], metadata={"unique": "utt_id"})

AUDIO_SHARD = pa.schema([
    *IDENTITY,
    ("source", pa.string()),
    ("num_samples", pa.int64()),
    ("sample_rate", pa.int32()),
    ("source_loudness_lufs", pa.float64()),
    ("audio", pa.binary()),
], metadata={"unique": "utt_id"})

CODES = pa.schema([
    *IDENTITY,
    ("codes", pa.list_(pa.uint16())),
    ("n_frames", pa.int32()),
], metadata={"unique": "utt_id"})

QUARANTINE = pa.schema([
    ("utt_id", pa.string()),
    ("source", pa.string()),
    ("stage", pa.string()),
    ("reason", pa.string()),
])

# Stage synthesize -> evaluate, report_pages: one row per generated WAV (`path`, inside the samples folder).
SAMPLES_FILE = "samples.parquet"
SAMPLES = pa.schema([
    ("sample_id", pa.string()),
    ("utt_id", pa.string()),       # the evaluation utterance whose sentence and voice this sample targets
    ("text", pa.string()),
    ("language", pa.string()),
    ("voice", pa.string()),
    ("mode", pa.string()),         # "speaker": by speaker token; "prompt": zero-shot voice-prompt continuation
    ("prompt_utt_id", pa.string()),
    ("path", pa.string()),         # WAV file name inside the samples folder
    ("seconds", pa.float64()),
    ("generation_seconds", pa.float64()),
    ("stop_reason", pa.string()),
], metadata={"unique": "sample_id"})

# Stages codec_eval, evaluate -> evaluate, report_pages: one row per system and scored clip. These columns are
# always there; every metric the registry measured follows as a column of its own (null where not measured).
SCORES_FILE = "utterances.parquet"
SCORES = pa.schema([
    ("system", pa.string()),
    ("utt_id", pa.string()),
    ("voice", pa.string()),
    ("language", pa.string()),
    ("text", pa.string()),
    ("seconds", pa.float64()),
])
# The systems codec_eval scores once per codec: the corpus audio, its codec resynthesis (the ceiling of any LM
# on these codes), and two sanity rows that must score WER 100%. Their WAVs are folders of codec_eval's output.
BASELINE_SYSTEMS = ("ground_truth", "codec", "silence", "noise")
BASELINE_AUDIO = ("ground_truth", "codec")


def system_name(model: str, mode: str) -> str:
    """The scores' and report's name for a model's samples: `sft` by speaker token, `sft_zero_shot` by prompt."""
    return model if mode == "speaker" else f"{model}_zero_shot"


def write_scores(rows: list[dict], path: Path) -> pa.Table:
    """Write scored rows: the SCORES columns first (checked), then each metric column, sorted by name."""
    key = validate(rows, SCORES, str(path))
    ids = [(s, u) for s, u in zip(key.column("system").to_pylist(), key.column("utt_id").to_pylist())]
    if len(set(ids)) != len(ids):
        raise TableError(f"{path}: a (system, utt_id) pair is scored twice")
    metrics = sorted({k for r in rows for k in r} - set(SCORES.names))
    table = pa.Table.from_pylist([{c: r.get(c) for c in (*SCORES.names, *metrics)} for r in rows])
    table = pa.Table.from_arrays([*key.columns, *(table.column(m) for m in metrics)], names=[*SCORES.names, *metrics])
    with atomic_output(Path(path)) as tmp:
        pq.write_table(table, tmp, compression="zstd")
    return table


def read_scores(path: Path) -> list[dict]:
    """Scored rows, each without the metrics it was not scored on."""
    _check_columns(Path(path), SCORES)
    return [{k: v for k, v in row.items() if v is not None} for row in pq.read_table(path).to_pylist()]


# Rows per Parquet row group: small enough that a reader can stream a shard of long clips.
ROW_GROUP_SIZE = 256


class TableError(ValueError):
    """A table does not match the schema the pipeline expects of it."""


def _as_table(rows: pa.Table | Iterable[Mapping], schema: pa.Schema, what: str) -> pa.Table:
    if isinstance(rows, pa.Table):
        missing = [name for name in schema.names if name not in rows.column_names]
        if missing:
            raise TableError(f"{what}: missing column(s) {missing}")
        try:
            return rows.select(schema.names).cast(schema)
        except (pa.ArrowInvalid, pa.ArrowTypeError, ValueError) as e:
            raise TableError(f"{what}: columns do not match the schema: {e}") from e
    rows = list(rows)
    try:
        return pa.Table.from_pylist([{name: row[name] for name in schema.names} for row in rows], schema=schema)
    except KeyError as e:
        raise TableError(f"{what}: a row lacks column {e}") from e
    except (pa.ArrowInvalid, pa.ArrowTypeError) as e:
        raise TableError(f"{what}: a value does not match the schema: {e}") from e


def validate(table: pa.Table, schema: pa.Schema, what: str) -> pa.Table:
    """Check nulls, the unique key (schema metadata `unique`) and split names; return the table cast to `schema`."""
    table = _as_table(table, schema, what)
    for name in schema.names:
        if table.column(name).null_count:
            raise TableError(f"{what}: column {name!r} has {table.column(name).null_count} null value(s)")
    unique = (schema.metadata or {}).get(b"unique", b"").decode()
    if unique:
        ids = table.column(unique).to_pylist()
        if len(set(ids)) != len(ids):
            seen, dups = set(), set()
            for i in ids:
                (dups if i in seen else seen).add(i)
            raise TableError(f"{what}: duplicate {unique}(s) {sorted(dups)[:5]}")
    if "split" in schema.names:
        bad = set(table.column("split").to_pylist()) - set(SPLITS)
        if bad:
            raise TableError(f"{what}: unknown split value(s) {sorted(bad)}; expected one of {SPLITS}")
    return table


def write_table(rows: pa.Table | Iterable[Mapping], schema: pa.Schema, path: Path,
                metadata: Mapping[str, str] | None = None) -> pa.Table:
    """Validate and atomically write a Parquet table; `metadata` goes into the file's key-value metadata."""
    table = validate(rows, schema, str(path))
    if metadata:
        table = table.replace_schema_metadata({**(table.schema.metadata or {}), **metadata})
    with atomic_output(Path(path)) as tmp:
        pq.write_table(table, tmp, row_group_size=ROW_GROUP_SIZE, compression="zstd")
    return table


def read_table(path: Path, schema: pa.Schema, columns: list[str] | None = None) -> pa.Table:
    """Read a stage's table, failing clearly if it lacks a column of `schema`."""
    path = Path(path)
    _check_columns(path, schema)
    return pq.read_table(path, columns=columns or schema.names)


def _check_columns(path: Path, schema: pa.Schema) -> None:
    if not path.exists():
        raise FileNotFoundError(f"{path}: table not found")
    names = pq.read_schema(path).names
    missing = [name for name in schema.names if name not in names]
    if missing:
        raise TableError(f"{path}: missing column(s) {missing}; was it written by this pipeline version?")


def file_metadata(path: Path) -> dict[str, str]:
    meta = pq.read_schema(path).metadata or {}
    return {k.decode(): v.decode() for k, v in meta.items()}
