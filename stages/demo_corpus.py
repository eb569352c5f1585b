"""Stage `demo_corpus`: speak the shipped public-domain text with offline voices, deterministically.

    python -m stages.demo_corpus --english data/demo/proverbs_kjv.tsv --mandarin data/demo/tang_couplets.tsv \
        --config-json '{"english_train_sentences": 20}' --out results/demo/demo_corpus

English Proverbs (KJV) are read by flite's voices, which are built from real CMU ARCTIC speakers;
Mandarin Tang-poem couplets by espeak-ng. The output folder holds `wavs/` and `transcripts.csv` in the
generic table layout (`utt_id,path,text,speaker,language,split`) that `prepare` imports. The text
files fix which sentences are held out for evaluation; every voice reads the same sentences.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from stages.atomic import atomic_output
from stages.config import from_dict
from stages.pipeline_config import DemoCorpusConfig

log = logging.getLogger("demo_corpus")


@dataclass(frozen=True)
class Utterance:
    utt_id: str
    text: str
    speaker: str
    language: str
    split: str
    command: tuple[str, ...]  # the synthesiser call, with {out} standing for the WAV path


def read_sentences(path: Path, train: int, held_out: int) -> list[tuple[int, str, str]]:
    """(row number, text, split) of the first `train` train and `held_out` eval sentences of a shipped file."""
    with path.open(encoding="utf-8") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    chosen, wanted = [], {"train": train, "eval": held_out}
    for number, row in enumerate(rows):
        if wanted.get(row["split"], 0) > 0:
            wanted[row["split"]] -= 1
            chosen.append((number, row["text"], row["split"]))
    short = {split: n for split, n in wanted.items() if n > 0}
    if short:
        raise ValueError(f"{path}: not enough sentences; still missing {short}")
    return chosen


def plan(english: Path, mandarin: Path, cfg: DemoCorpusConfig) -> list[Utterance]:
    utterances = []
    for number, text, split in read_sentences(english, cfg.english_train_sentences, cfg.english_eval_sentences):
        for voice in cfg.english_voices:
            utterances.append(Utterance(f"en_{voice}_{number:04d}", text, voice, "en", split,
                                        ("flite", "-voice", voice, "-t", text, "-o", "{out}")))
    if cfg.mandarin_voices:
        for number, text, split in read_sentences(mandarin, cfg.mandarin_train_sentences,
                                                  cfg.mandarin_eval_sentences):
            for voice in cfg.mandarin_voices:
                speaker = voice.replace("+", "_")
                utterances.append(Utterance(f"zh_{speaker}_{number:04d}", text, speaker, "zh", split,
                                            ("espeak-ng", "-v", voice, "-w", "{out}", text)))
    return utterances


def _require_tools(utterances: list[Utterance]) -> None:
    for tool in sorted({u.command[0] for u in utterances}):
        if shutil.which(tool) is None:
            raise RuntimeError(f"{tool} is not installed; run `make setup` (it installs flite and espeak-ng "
                               f"with apt-get), or `sudo apt-get install flite espeak-ng`")


def _speak(utterance: Utterance, wav: Path) -> None:
    command = [str(wav) if part == "{out}" else part for part in utterance.command]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0 or not wav.exists() or wav.stat().st_size <= 44:
        raise RuntimeError(f"{utterance.command[0]} failed for {utterance.utt_id}: {result.stderr.strip()}")


def make_demo_corpus(english: Path, mandarin: Path, cfg: DemoCorpusConfig, out: Path, threads: int = 2) -> int:
    """Synthesise every planned utterance into `out`; returns the number of utterances."""
    utterances = plan(english, mandarin, cfg)
    _require_tools(utterances)
    with atomic_output(out) as tmp:
        (tmp / "wavs").mkdir(parents=True)
        with ThreadPoolExecutor(max(1, threads)) as pool:  # each call is a synthesiser process
            jobs = [pool.submit(_speak, u, tmp / "wavs" / f"{u.utt_id}.wav") for u in utterances]
            for job in tqdm(jobs, desc="synthesise", mininterval=5):
                job.result()
        with (tmp / "transcripts.csv").open("w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f, lineterminator="\n")
            writer.writerow(["utt_id", "path", "text", "speaker", "language", "split"])
            for u in utterances:
                writer.writerow([u.utt_id, f"wavs/{u.utt_id}.wav", u.text, u.speaker, u.language, u.split])
    log.info("made %d utterances in %s", len(utterances), out)
    return len(utterances)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--english", type=Path, required=True, help="data/demo/proverbs_kjv.tsv")
    parser.add_argument("--mandarin", type=Path, required=True, help="data/demo/tang_couplets.tsv")
    parser.add_argument("--config-json", required=True, help="the `corpus.demo` config section as JSON")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    cfg = from_dict(DemoCorpusConfig, json.loads(args.config_json), "corpus.demo")
    make_demo_corpus(args.english, args.mandarin, cfg, args.out, args.threads)


if __name__ == "__main__":
    main()
