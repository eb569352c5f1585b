"""Shared test helpers: repository paths and a Snakemake runner for DAG tests.

    .venv/bin/python -m pytest            # the default suite (slow tests excluded)
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

# Tests run tiny models: one intra-op thread avoids two threads stalling on each other on a busy 2-core
# machine (measured 5-30x slower), and subprocess DAG runs get the cores instead.
torch.set_num_threads(1)

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO / "tests" / "fixtures"
ARCTIC = FIXTURES / "arctic"
CORPORA = FIXTURES / "corpora"


def snakemake_command(workdir: Path, *args: str, snakefile: Path = REPO / "Snakefile") -> list[str]:
    """The command line that runs the Snakefile in `workdir` on configs/tiny.yaml, for callers that need a Popen."""
    return [sys.executable, "-m", "snakemake", "-s", str(snakefile), "--directory", str(workdir),
            "--configfile", str(snakefile.parent / "configs" / "tiny.yaml"), *args]


def snakemake(workdir: Path, *args: str, config: dict | None = None, check: bool = True,
              timeout: float = 600, snakefile: Path = REPO / "Snakefile", output_cache: Path | None = None
              ) -> subprocess.CompletedProcess:
    """Run the repository's Snakefile in `workdir` (outputs land in workdir/results) on configs/tiny.yaml.

    `output_cache`: the between-workflow cache folder, passed with `--cache` (every rule marked `cache:`).
    """
    workdir.mkdir(parents=True, exist_ok=True)
    command = snakemake_command(workdir, snakefile=snakefile)
    if config is not None:
        override = workdir / "override.yaml"
        override.write_text(yaml.safe_dump(config))
        command.append(str(override))
    env = dict(os.environ)
    if output_cache is not None:
        output_cache.mkdir(parents=True, exist_ok=True)
        env["SNAKEMAKE_OUTPUT_CACHE"] = str(output_cache)
        args = (*args, "--cache")
    result = subprocess.run([*command, *args], capture_output=True, text=True, timeout=timeout, env=env)
    if check and result.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-5000:]}")
    return result


def overfit(model, batch: dict, steps: int, lr: float = 1e-2, stop_loss: float = 0.01):
    """Train `model` on one fixed batch with AdamW until its loss drops below `stop_loss`; the last output."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    for _ in range(steps):
        out = model(batch["input_ids"], batch["targets"])
        optimizer.zero_grad()
        out.loss.backward()
        optimizer.step()
        if out.loss.item() < stop_loss:
            break
    return out


@pytest.fixture(scope="session")
def tiny_dag(tmp_path_factory) -> Path:
    """A work folder in which the tiny DAG has run once, shared by the tests that inspect its outputs."""
    workdir = tmp_path_factory.mktemp("tiny_dag")
    snakemake(workdir, "--cores", "2", output_cache=workdir / "output-cache")
    return workdir
