"""SIGKILL each stage of the tiny DAG mid-job and rerun with --rerun-incomplete: nothing is lost or doubled.

For every stage in turn, a copy of the finished tiny DAG reruns that stage alone (`--forcerun`), is
killed with SIGKILL at a seeded random moment while the job runs (training stages: after their first
checkpoint), and is run again. The stage's outputs must then equal the uninterrupted run's: Parquet
contents, tokenizer bytes, codec and LM weights (the same seed), sample audio; and training must resume
from its checkpoint rather than start over. Seed 0 of every stage runs in the default suite; seeds 1
and 2 are marked slow:

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
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from conftest import REPO

RUN = Path("results/tiny")
# Values that measure the machine, not the result: they differ between any two runs.
TIMING_KEYS = ("generation_seconds", "rtf", "tokens_per_s", "this_run")


def demo_corpus(workdir: Path) -> Path:
    (folder,) = (workdir / "results" / "demo_corpus").iterdir()
    return folder.relative_to(workdir)


# rule -> (targets, state beside the outputs that the forced rerun must start without, start of its job)
STAGES = {
    "demo_corpus": (lambda w: [demo_corpus(w)], [], "logs/demo_corpus.log"),
    "prepare": (lambda w: [RUN / "manifest.parquet", RUN / "quarantine-prepare.parquet"], [], "logs/prepare.log"),
    "resample": (lambda w: [RUN / f"audio/shard-0000{i}.parquet" for i in (0, 1)], [], "logs/resample/00000.log"),
    "train_codec": (lambda w: [RUN / "codec/codec.ckpt"], ["codec/state.pt", "codec/tensorboard"], "codec/state.pt"),
    "extract_codes": (lambda w: [RUN / f"codes/shard-0000{i}.parquet" for i in (0, 1)], [], "logs/extract_codes/00000.log"),
    "fit_tokenizer": (lambda w: [RUN / "tokenizer"], [], "logs/fit_tokenizer.log"),
    "pretrain": (lambda w: [RUN / "pretrain/model"], ["pretrain/checkpoints"], "pretrain/checkpoints/latest"),
    "sft": (lambda w: [RUN / "sft/model"], ["sft/checkpoints"], "sft/checkpoints/latest"),
    "synthesize": (lambda w: [RUN / "samples/sft"], [], "logs/synthesize/sft.log"),
    "evaluate": (lambda w: [RUN / "eval"], [], "logs/evaluate.log"),
}
RESUME_MESSAGE = {"train_codec": "resumed from", "pretrain": "resumed from", "sft": "resumed from"}


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
        lines = [stable(json.loads(line)) for line in path.read_text().splitlines() if line.strip()]
        return hashlib.sha256(json.dumps(lines, sort_keys=True).encode()).hexdigest()
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


def snakemake_command(workdir: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "--directory", str(workdir),
            "--configfile", str(REPO / "configs" / "tiny.yaml"), "--cores", "2", *args]


def kill_mid_job(workdir: Path, rule: str, targets: list[Path], started: Path, seed: int) -> str:
    """Force `rule` to run again and SIGKILL Snakemake and its job at a seeded random moment; the job's log."""
    log_path = workdir / f"killed-{rule}.log"
    with log_path.open("w") as log:
        process = subprocess.Popen(snakemake_command(workdir, "--forcerun", rule, *map(str, targets)),
                                   stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 300
        while not started.exists():
            assert process.poll() is None, f"{rule} ended before it could be killed:\n{log_path.read_text()[-3000:]}"
            assert time.monotonic() < deadline, f"{rule} did not start within 5 minutes"
            time.sleep(0.02)
        time.sleep(random.Random(seed).uniform(0.0, 1.0))
        finished = process.poll() is not None
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    assert not finished, f"{rule} finished before the kill; the test killed nothing"
    return log_path.read_text()


@pytest.fixture(scope="module")
def finished(tiny_dag, tmp_path_factory) -> Path:
    """A pristine copy of the finished tiny DAG, from which each case copies its own work folder."""
    copy = tmp_path_factory.mktemp("finished") / "work"
    shutil.copytree(tiny_dag, copy, symlinks=True, ignore=shutil.ignore_patterns("output-cache"))
    return copy


@pytest.mark.parametrize("seed", [0, pytest.param(1, marks=pytest.mark.slow), pytest.param(2, marks=pytest.mark.slow)])
@pytest.mark.parametrize("rule", list(STAGES))
def test_a_stage_killed_mid_job_reruns_to_the_uninterrupted_outputs(finished, tmp_path, rule, seed):
    work = tmp_path / "work"
    shutil.copytree(finished, work, symlinks=True)
    target_of, state, start_marker = STAGES[rule]
    targets = target_of(work)
    expected = snapshot(finished, targets)
    assert expected, f"the uninterrupted run wrote nothing for {rule}"
    for relative in state:
        shutil.rmtree(work / RUN / relative) if (work / RUN / relative).is_dir() else (work / RUN / relative).unlink()
    started = work / RUN / start_marker
    started.unlink(missing_ok=True)  # a log of the uninterrupted run: wait for the forced job's own instead
    kill_mid_job(work, rule, targets, started, seed)

    # What a user does after a crash: release the killed run's lock, then rerun what it left incomplete.
    subprocess.run(snakemake_command(work, "--unlock"), check=True, capture_output=True)
    rerun = subprocess.run(snakemake_command(work, "--rerun-incomplete", *map(str, targets)),
                           capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stdout[-2000:] + rerun.stderr[-4000:]
    assert snapshot(work, targets) == expected
    if rule in RESUME_MESSAGE:
        log = (work / RUN / "logs" / f"{rule}.log").read_text()
        assert RESUME_MESSAGE[rule] in log, f"{rule} started over instead of resuming:\n{log[-2000:]}"
