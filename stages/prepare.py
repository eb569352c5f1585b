"""Stage `prepare`: import a corpus into the manifest table, quarantining what cannot be used.

    python -m stages.prepare --corpus data/LJSpeech-1.1 --config-json '{"format": "ljspeech"}' \
        --manifest results/demo/manifest.parquet --quarantine results/demo/quarantine-prepare.parquet

Reads only transcripts and audio headers (fast, even for LibriTTS); decoding is `resample`'s job.
Every item ends up in exactly one of the two output tables.
"""

from __future__ import annotations

import argparse
import logging
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import soundfile as sf
from tqdm import tqdm

from stages.importers import CorpusItem, import_corpus
from stages.config.corpus import CorpusConfig
from stages.common.shards import split_of
from stages.common.tables import MANIFEST, QUARANTINE, SPLITS, write_table
from stages.common.cli import config_section, start

log = logging.getLogger("prepare")
_SIZE_MISMATCH = re.compile(r"^(RIFF|data)\s*:\s*(\d+) \(should be (\d+)\)", re.MULTILINE)
STAGE = "prepare"


@dataclass(frozen=True)
class AudioHeader:
    duration: float
    sample_rate: int
    channels: int


def probe(source: str) -> AudioHeader | str:
    """The audio header of `source`, or the quarantine reason why it cannot be used."""
    path = Path(source)
    if not path.is_file():
        return f"missing_file: {source} does not exist"
    if path.stat().st_size == 0:
        return "empty_file: 0 bytes"
    try:
        info = sf.info(source)
    except (sf.LibsndfileError, RuntimeError) as e:
        if "Format not recognised" in str(e) or "unknown format" in str(e).lower():
            return f"unsupported_format: {e}"
        return f"corrupt: {e}"
    # libsndfile reads a cut-off WAV without complaint but notes that a chunk is shorter than its header says.
    for chunk, declared, actual in _SIZE_MISMATCH.findall(info.extra_info):
        if int(declared) > int(actual):
            return f"truncated: the {chunk} chunk declares {declared} bytes but the file holds {actual}"
    if info.frames == 0:
        return "zero_length: the file holds no samples"
    return AudioHeader(info.frames / info.samplerate, info.samplerate, info.channels)


def _transcript_problem(item: CorpusItem) -> Optional[str]:
    if item.problem:
        return item.problem
    if item.text is None or not item.text.strip():
        return "empty_transcript: no text for this utterance"
    if item.split is not None and item.split not in SPLITS:
        return f"bad_split: {item.split!r} is not one of {SPLITS}"
    return None


def _split(item: CorpusItem, cfg: CorpusConfig) -> str:
    if item.split in ("eval", "valid"):
        return item.split
    # A corpus that fixes its evaluation sentences still needs validation sentences for the LM.
    eval_fraction = 0.0 if item.split == "train" else cfg.eval_fraction
    return split_of(item.text, eval_fraction, cfg.valid_fraction)


def prepare(corpus: Path, cfg: CorpusConfig, manifest: Path, quarantine: Path, threads: int = 4) -> tuple[int, int]:
    """Write the manifest and quarantine tables; returns (kept, quarantined) counts."""
    items = list(import_corpus(cfg.format, corpus, cfg.language, cfg.vctk_mic))
    log.info("%d items in %s (%s layout)", len(items), corpus, cfg.format)
    with ThreadPoolExecutor(max(1, threads)) as pool:  # header reads wait on the disk, not the CPU
        headers = list(tqdm(pool.map(lambda it: probe(it.source), items), total=len(items),
                            desc="probe audio", mininterval=5))
    rows, rejected, seen = [], [], {}
    for item, header in zip(items, headers):
        reason = _transcript_problem(item)
        if reason is None and item.utt_id in seen:
            reason = f"duplicate_utt_id: {item.utt_id} already used by {seen[item.utt_id]}"
        if reason is None and isinstance(header, str):
            reason = header
        if reason is not None:
            rejected.append({"utt_id": item.utt_id, "source": item.source, "stage": STAGE, "reason": reason})
            continue
        seen[item.utt_id] = item.source
        rows.append({
            "utt_id": item.utt_id, "speaker": item.speaker, "language": item.language,
            "text": " ".join(item.text.split()), "split": _split(item, cfg), "source": item.source,
            "duration": header.duration, "source_sample_rate": header.sample_rate, "channels": header.channels,
        })
    write_table(rows, MANIFEST, manifest)
    write_table(rejected, QUARANTINE, quarantine)
    hours = sum(r["duration"] for r in rows) / 3600
    log.info("kept %d utterances (%.2f h), quarantined %d", len(rows), hours, len(rejected))
    for r in rejected[:20]:
        log.warning("quarantined %s: %s", r["utt_id"], r["reason"])
    return len(rows), len(rejected)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, required=True, help="corpus root folder or table file")
    parser.add_argument("--config-json", required=True, help="the `corpus` config section as JSON")
    parser.add_argument("--manifest", type=Path, required=True)
    parser.add_argument("--quarantine", type=Path, required=True)
    parser.add_argument("--threads", type=int, default=4)
    args = parser.parse_args(argv)
    start()
    cfg = config_section(CorpusConfig, args.config_json, "corpus")
    prepare(args.corpus, cfg, args.manifest, args.quarantine, args.threads)


if __name__ == "__main__":
    main()
