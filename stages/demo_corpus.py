"""Stage `demo_corpus`: speak the shipped public-domain text with offline voices, deterministically.

    python -m stages.demo_corpus --english data/demo/kjv_verses.tsv --mandarin data/demo/tang_couplets.tsv \
        --config-json '{"english_train_sentences": 20}' --out results/demo/demo_corpus

English KJV verses are read by flite's voices, which are built from real CMU ARCTIC speakers;
Mandarin Tang-poem couplets by espeak-ng's pinyin voices. The output folder holds `wavs/` and
`transcripts.csv` in the generic table layout (`utt_id,path,text,speaker,language,split`) that `prepare`
imports. The text files fix which sentences are held out for evaluation. Every voice reads every held-out
sentence; an English training sentence is read by `english_readers_per_sentence` voices in rotation, so
the corpus holds many distinct sentences for the same hours of audio.
"""

from __future__ import annotations

import argparse
import csv
import logging
import re
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from stages.common.atomic import atomic_output
from stages.config.corpus import DemoCorpusConfig
from stages.common.cli import config_section, start

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


def mandarin_speaker(voice: str) -> str:
    """Speaker id of an espeak-ng voice: `cmn-latn-pinyin+f3` -> `cmn_f3`."""
    language, _, variant = voice.partition("+")
    return f"{language.split('-')[0]}_{variant}" if variant else language.split("-")[0]


def plan(english: Path, mandarin: Path, cfg: DemoCorpusConfig) -> list[Utterance]:
    utterances = []
    english_rows = read_sentences(english, cfg.english_train_sentences, cfg.english_eval_sentences)
    train_index = 0
    for number, text, split in english_rows:
        voices = cfg.english_voices
        if split == "train":
            readers = min(cfg.english_readers_per_sentence, len(voices))
            voices = tuple(voices[(train_index + k) % len(voices)] for k in range(readers))
            train_index += 1
        for voice in voices:
            utterances.append(Utterance(f"en_{voice}_{number:04d}", text, voice, "en", split,
                                        ("flite", "-voice", voice, "-t", text, "-o", "{out}")))
    if cfg.mandarin_voices:
        for number, text, split in read_sentences(mandarin, cfg.mandarin_train_sentences,
                                                  cfg.mandarin_eval_sentences):
            for voice in cfg.mandarin_voices:
                speaker = mandarin_speaker(voice)
                utterances.append(Utterance(f"zh_{speaker}_{number:04d}", text, speaker, "zh", split,
                                            ("espeak-ng", "-v", voice, "-w", "{out}", text)))
    return utterances


def _require_tools(utterances: list[Utterance]) -> None:
    for tool in sorted({u.command[0] for u in utterances}):
        if shutil.which(tool) is None:
            raise RuntimeError(f"{tool} is not installed; run `make setup` (it installs flite and espeak-ng "
                               f"with apt-get), or `sudo apt-get install flite espeak-ng`")


SWITCH = re.compile(r"\([a-z]{2,3}\)")  # espeak-ng's mark for a change of language, e.g. (en)


def _phonemes(voice: str, text: str) -> str:
    return subprocess.run(["espeak-ng", "-v", voice, "-x", "-q", "--stdin"], input=text, capture_output=True,
                          text=True, check=True).stdout


def language_switches(voice: str, lines: list[str]) -> list[tuple[str, str]]:
    """(line, phonemes) of the lines that espeak-ng `voice` reads partly in another language.

    espeak-ng marks a switch as `(en)` in its phoneme output (`-x`); 1.51's plain `cmn` voice does it for
    many characters and then says tone digits in English ("ni three hao three"). One process reads all
    lines; only when it finds a switch are the lines read one by one to name them.
    """
    if not SWITCH.search(_phonemes(voice, "\n".join(lines) + "\n")):
        return []
    return [(line, ph) for line in lines if SWITCH.search(ph := " ".join(_phonemes(voice, line).split()))]


def _require_native_pronunciation(utterances: list[Utterance]) -> None:
    by_voice: dict[str, list[str]] = {}
    for u in utterances:
        if u.command[0] == "espeak-ng":
            by_voice.setdefault(u.command[2], []).append(u.text)
    for voice, lines in by_voice.items():
        switched = language_switches(voice, lines)
        if switched:
            line, phonemes = switched[0]
            raise ValueError(f"corpus.demo.mandarin_voices: espeak-ng voice {voice!r} reads {len(switched)} of "
                             f"{len(lines)} sentences partly in another language (e.g. {line} -> {phonemes}); "
                             "use a cmn-latn-pinyin voice")


def _speak(utterance: Utterance, wav: Path) -> None:
    command = [str(wav) if part == "{out}" else part for part in utterance.command]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0 or not wav.exists() or wav.stat().st_size <= 44:
        raise RuntimeError(f"{utterance.command[0]} failed for {utterance.utt_id}: {result.stderr.strip()}")


def make_demo_corpus(english: Path, mandarin: Path, cfg: DemoCorpusConfig, out: Path, threads: int = 2) -> int:
    """Synthesise every planned utterance into `out`; returns the number of utterances."""
    utterances = plan(english, mandarin, cfg)
    _require_tools(utterances)
    _require_native_pronunciation(utterances)
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
    parser.add_argument("--english", type=Path, required=True, help="data/demo/kjv_verses.tsv")
    parser.add_argument("--mandarin", type=Path, required=True, help="data/demo/tang_couplets.tsv")
    parser.add_argument("--config-json", required=True, help="the `corpus.demo` config section as JSON")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    start()
    cfg = config_section(DemoCorpusConfig, args.config_json, "corpus.demo")
    make_demo_corpus(args.english, args.mandarin, cfg, args.out, args.threads)


if __name__ == "__main__":
    main()
