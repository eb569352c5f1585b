"""Cluster execution is a change of profile: a SLURM dry run (no cluster needed) submits the right resources."""

from __future__ import annotations

import re

import pytest

from conftest import REPO, snakemake

pytest.importorskip("snakemake_executor_plugin_slurm")


def jobs_by_rule(out: str) -> dict[str, list[dict]]:
    """Per rule, each planned job's resources (key=value) and shell command, from a dry run's printout."""
    jobs: dict[str, list[dict]] = {}
    for block in re.split(r"\n(?=(?:local)?rule \w+:\n)", out):
        name = re.match(r"(?:local)?rule (\w+):", block)
        resources = re.search(r"^\s+resources: (.+)$", block, re.MULTILINE)
        if not name or not resources:
            continue
        values = dict(item.split("=", 1) for item in resources.group(1).split(", "))
        threads = re.search(r"^\s+threads: (\d+)$", block, re.MULTILINE)
        values["threads"] = threads.group(1) if threads else "1"
        values["shell"] = block
        jobs.setdefault(name.group(1), []).append(values)
    return jobs


@pytest.fixture(scope="module")
def slurm_plan(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("slurm")
    # --cores bounds the threads of one submitted job in a dry run; a real cluster node has them.
    out = snakemake(workdir, "--profile", str(REPO / "workflow" / "profiles" / "slurm"), "--dry-run",
                    "--cores", "256").stdout
    return jobs_by_rule(out)


@pytest.mark.parametrize("rule, gpus, partition", [
    ("train_codec", "1", "gpu"), ("extract_codes", "1", "gpu"), ("pretrain", "8", "gpu"), ("sft", "8", "gpu"),
    ("synthesize", "1", "gpu"), ("prepare", None, "cpu"), ("resample", None, "cpu"), ("evaluate", None, "cpu"),
])
def test_each_rule_asks_slurm_for_its_resources(slurm_plan, rule, gpus, partition):
    for job in slurm_plan[rule]:
        assert job["slurm_partition"] == partition and job["slurm_account"] == "your_account"
        assert job.get("gpu") == gpus
        assert int(job["runtime"]) > 0 and int(job["mem_mb"]) > 0


def test_training_launches_one_process_per_gpu(slurm_plan):
    for rule in ("pretrain", "sft"):
        (job,) = slurm_plan[rule]
        assert "--nproc_per_node 8" in job["shell"] and "--threads 64" in job["shell"]


def test_every_sharded_rule_becomes_one_job_per_shard(slurm_plan):
    assert len(slurm_plan["resample"]) == len(slurm_plan["extract_codes"]) == 2
