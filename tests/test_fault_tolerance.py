"""SIGKILL each stage of the tiny DAG mid-job and rerun with --rerun-incomplete: nothing is lost or doubled.

For every stage in turn, a copy of the finished tiny DAG reruns that stage alone (`--forcerun`), is
killed with SIGKILL at a seeded random moment while the job runs (training stages: after their first
checkpoint), and is run again after `--unlock` with `--rerun-incomplete`. The stage's outputs must then equal the uninterrupted run's: Parquet
contents, tokenizer bytes, codec and LM weights (the same seed), sample audio; and training must resume
from its checkpoint rather than start over. Seed 0 of the stages that take seconds on the tiny config
runs in the default suite; the other seeds and the minute-long stages (pretrain, sft, synthesize,
evaluate) are marked slow:

    .venv/bin/python -m pytest tests/test_fault_tolerance.py -m "slow or not slow"
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pyarrow.parquet as pq
import pytest

from conftest import snakemake_command

RUN = Path("results/tiny")
# Values that measure the machine, not the result: they differ between any two runs.
TIMING_KEYS = ("generation_seconds", "rtf", "tokens_per_s", "this_run")


def demo_corpus(workdir: Path) -> Path:
    (folder,) = (workdir / "results" / "demo_corpus").iterdir()
    return folder.relative_to(workdir)


@dataclass(frozen=True)
class Stage:
    targets: Callable[[Path], list[Path]]
    started: str                  # appears (under results/tiny) once the job is under way
    window: float                 # the kill lands uniformly in [0, window] s after that: before the job ends
    state: tuple[str, ...] = ()   # kept beside the outputs; removed so the forced run starts from scratch
    slow: bool = False            # seed 0 of the others runs in the default suite


STAGES = {
    "demo_corpus": Stage(lambda w: [demo_corpus(w)], "logs/demo_corpus.log", 1.5),
    "prepare": Stage(lambda w: [RUN / "manifest.parquet", RUN / "quarantine-prepare.parquet"], "logs/prepare.log", 1.0),
    "resample": Stage(lambda w: [RUN / f"audio/shard-0000{i}.parquet" for i in (0, 1)], "logs/resample/00000.log",
                      1.5),
    "train_codec": Stage(lambda w: [RUN / f"codec/codec.{ext}" for ext in ("ckpt", "yaml", "metrics.json")],
                         "codec/state.pt", 1.0, state=("codec/state.pt", "codec/tensorboard")),
    "extract_codes": Stage(lambda w: [RUN / f"codes/shard-0000{i}.parquet" for i in (0, 1)],
                           "logs/extract_codes/00000.log", 2.0),
    "fit_tokenizer": Stage(lambda w: [RUN / "tokenizer"], "logs/fit_tokenizer.log", 1.0),
    "pretrain": Stage(lambda w: [RUN / "pretrain/model"], "pretrain/checkpoints/latest", 1.0,
                      state=("pretrain/checkpoints",), slow=True),
    "sft": Stage(lambda w: [RUN / "sft/model"], "sft/checkpoints/latest", 0.5, state=("sft/checkpoints",), slow=True),
    "synthesize": Stage(lambda w: [RUN / "samples/sft"], "logs/synthesize/sft.log", 5.0, slow=True),
    "evaluate": Stage(lambda w: [RUN / "eval"], "logs/evaluate.log", 20.0, slow=True),
}
RESUMING = ("train_codec", "pretrain", "sft")  # their logs must say "resumed from <checkpoint>"


def stable(value):
    """JSON value without its timing entries."""
    if isinstance(value, dict):
        return {k: stable(v) for k, v in value.items() if not any(t in k for t in TIMING_KEYS)}
    if isinstance(value, list):
        return [stable(v) for v in value]
    return value


def digest(path: Path) -> str:
    """What must not change between an uninterrupted and a killed-and-rerun job, as one hash."""
    if path.suffix == ".parquet":
        table = pq.read_table(path)
        table = table.drop_columns([c for c in table.column_names if any(t in c for t in TIMING_KEYS)])
        return hashlib.sha256(json.dumps(table.to_pylist(), sort_keys=True, default=repr).encode()).hexdigest()
    if path.suffix in (".json", ".jsonl"):
        text = path.read_text()
        value = ([json.loads(line) for line in text.splitlines() if line.strip()] if path.suffix == ".jsonl"
                 else json.loads(text))
        return hashlib.sha256(json.dumps(stable(value), sort_keys=True).encode()).hexdigest()
    if path.suffix == ".ckpt":  # the tensors, not the pickle around them
        import torch

        state = torch.load(path, map_location="cpu", weights_only=True)["state_dict"]
        return hashlib.sha256(b"".join(k.encode() + v.numpy().tobytes() for k, v in sorted(state.items()))).hexdigest()
    return hashlib.sha256(path.read_bytes()).hexdigest()


def snapshot(workdir: Path, targets: list[Path]) -> dict[str, str]:
    files = {}
    for target in targets:
        path = workdir / target
        for file in sorted(path.rglob("*") if path.is_dir() else [path]):
            if file.is_file():
                files[str(file.relative_to(workdir))] = digest(file)
    return files


def clear_state(workdir: Path, stage: Stage) -> None:
    """Remove what would let the forced job skip work, and the marker an earlier run left."""
    for relative in stage.state:
        path = workdir / RUN / relative
        if path.exists():
            shutil.rmtree(path) if path.is_dir() else path.unlink()
    (workdir / RUN / stage.started).unlink(missing_ok=True)


def kill_mid_job(workdir: Path, rule: str, stage: Stage, seed: int, attempts: int = 4) -> None:
    """Force `rule` to run again and SIGKILL Snakemake and its job at a seeded random moment while it runs.

    On a machine fast enough that the job ends before the drawn moment, it is run again and killed four
    times sooner, so the test always kills a running job rather than failing on how busy the machine is.
    """
    delay = random.Random(seed).uniform(0.0, stage.window)
    for _ in range(attempts):
        clear_state(workdir, stage)
        if kill_once(workdir, rule, stage, delay):
            return
        delay /= 4
    raise AssertionError(f"{rule} finished before every kill ({attempts} tries); the test killed nothing")


def kill_once(workdir: Path, rule: str, stage: Stage, delay: float) -> bool:
    """Whether the forced job was still running when it was killed `delay` s after it started."""
    log_path = workdir / f"killed-{rule}.log"
    started = workdir / RUN / stage.started
    with log_path.open("w") as log:
        process = subprocess.Popen(snakemake_command(workdir, "--cores", "2", *map(str, stage.targets(workdir)),
                                                     "--forcerun", rule),
                                   stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 300
        while not started.exists():
            assert process.poll() is None, f"{rule} ended before it could be killed:\n{log_path.read_text()[-3000:]}"
            assert time.monotonic() < deadline, f"{rule} did not start within 5 minutes"
            time.sleep(0.02)
        time.sleep(delay)
        if process.poll() is not None:
            return False
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:  # it ended between the poll and the kill
            process.wait()
            return False
        process.wait()
    return True


@pytest.fixture(scope="module")
def finished(tiny_dag, tmp_path_factory) -> Path:
    """A pristine copy of the finished tiny DAG, from which each case copies its own work folder."""
    copy = tmp_path_factory.mktemp("finished") / "work"
    shutil.copytree(tiny_dag, copy, symlinks=True, ignore=shutil.ignore_patterns("output-cache"))
    return copy


def cases():
    for rule, stage in STAGES.items():
        for seed in (0, 1, 2):
            marks = [pytest.mark.slow] if stage.slow or seed else []
            yield pytest.param(rule, seed, marks=marks, id=f"{rule}-seed{seed}")


@pytest.mark.parametrize("rule, seed", list(cases()))
def test_a_stage_killed_mid_job_reruns_to_the_uninterrupted_outputs(finished, tmp_path, rule, seed):
    work = tmp_path / "work"
    shutil.copytree(finished, work, symlinks=True)
    stage = STAGES[rule]
    targets = stage.targets(work)
    expected = snapshot(finished, targets)
    assert expected, f"the uninterrupted run wrote nothing for {rule}"
    kill_mid_job(work, rule, stage, seed)

    # What a user does after a crash: release the killed run's lock, then rerun what it left incomplete.
    subprocess.run(snakemake_command(work, "--unlock"), check=True, capture_output=True)
    rerun = subprocess.run(snakemake_command(work, "--cores", "2", "--rerun-incomplete", *map(str, targets)),
                           capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stdout[-2000:] + rerun.stderr[-4000:]
    for table in [t for t in targets if t.suffix == ".parquet"]:
        ids = pq.read_table(work / table).column("utt_id").to_pylist()
        assert len(ids) == len(set(ids)), f"duplicate utterances in {table}"
    assert snapshot(work, targets) == expected  # nothing missing or changed either
    if rule in RESUMING:
        log = (work / RUN / "logs" / f"{rule}.log").read_text()
        assert "resumed from" in log, f"{rule} started over instead of resuming:\n{log[-2000:]}"
