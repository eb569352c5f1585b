"""Cluster execution is a change of profile: a SLURM dry run (no cluster needed) submits the right resources."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest
import yaml

from conftest import REPO, snakemake, snakemake_command

pytest.importorskip("snakemake_executor_plugin_slurm")
LAUNCHER = REPO / "workflow" / "scripts" / "torchrun.sh"


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
        assert re.search(r"torchrun\.sh'? 1 8 -m stages\.train_lm", job["shell"]) and "--threads 64" in job["shell"]


def test_multi_node_training_is_a_change_of_profile(tmp_path):
    profile = yaml.safe_load((REPO / "workflow" / "profiles" / "slurm" / "config.yaml").read_text())
    profile["set-resources"]["pretrain"].update(nodes=2, gpu=16, mpi="srun", tasks_per_node=8)
    (tmp_path / "two-nodes").mkdir()
    (tmp_path / "two-nodes" / "config.yaml").write_text(yaml.safe_dump(profile))
    out = snakemake(tmp_path / "work", "--profile", str(tmp_path / "two-nodes"), "--dry-run", "--cores", "256").stdout
    (job,) = jobs_by_rule(out)["pretrain"]
    assert job["nodes"] == "2" and job["gpu"] == "16" and job["mpi"] == "srun"
    assert re.search(r"torchrun\.sh'? 2 16 -m stages\.train_lm", job["shell"])


def fake_tools(tmp_path, *names):
    """Stand-ins for torchrun/srun/scontrol that print how they were called, first on PATH."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    for name in names:
        tool = bin_dir / name
        output = "node-a\nnode-b" if name == "scontrol" else f"{name} $*"
        tool.write_text(f"#!/bin/sh\necho \"{output}\"\n")
        tool.chmod(0o755)
    return {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}


def launch(env, *args):
    return subprocess.run(["bash", str(LAUNCHER), *args, "-m", "stages.train_lm"], env=env, capture_output=True,
                          text=True)


def test_the_launcher_starts_one_cpu_process_or_one_per_gpu_on_one_node(tmp_path):
    env = fake_tools(tmp_path, "torchrun")
    assert launch(env, "1", "0").stdout.strip() == "torchrun --standalone --nproc_per_node 1 -m stages.train_lm"
    assert launch(env, "1", "4").stdout.strip() == "torchrun --standalone --nproc_per_node 4 -m stages.train_lm"


def test_the_launcher_meets_at_a_rendezvous_on_the_first_node_of_a_slurm_allocation(tmp_path):
    env = {**fake_tools(tmp_path, "srun", "scontrol"), "SLURM_JOB_NODELIST": "node-[a-b]", "SLURM_JOB_ID": "77"}
    out = launch(env, "2", "16")
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == [
        "srun", "--nodes", "2", "--ntasks-per-node", "1", "--kill-on-bad-exit=1", "torchrun", "--nnodes", "2",
        "--nproc_per_node", "8", "--rdzv_backend", "c10d", "--rdzv_endpoint", "node-a:29500", "--rdzv_id", "77",
        "-m", "stages.train_lm"]


@pytest.mark.parametrize("nodes, gpus, env_extra, message", [
    ("2", "16", {}, "needs a SLURM allocation"),
    ("2", "3", {"SLURM_JOB_NODELIST": "node-a"}, "cannot be split evenly"),
])
def test_the_launcher_refuses_a_layout_it_cannot_start(tmp_path, nodes, gpus, env_extra, message):
    env = {k: v for k, v in fake_tools(tmp_path, "srun").items() if not k.startswith("SLURM_")}
    out = launch({**env, **env_extra}, nodes, gpus)
    assert out.returncode == 2 and message in out.stderr


def test_every_sharded_rule_becomes_one_job_per_shard(slurm_plan):
    assert len(slurm_plan["resample"]) == len(slurm_plan["extract_codes"]) == 2


def test_the_launcher_tells_the_trainer_how_many_gpus_it_was_given(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "torchrun").write_text('#!/bin/sh\necho "gpus=$MINIMIND_GPUS"\n')
    (bin_dir / "torchrun").chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    assert launch(env, "1", "4").stdout.strip() == "gpus=4"
    assert launch(env, "1", "0").stdout.strip() == "gpus=0"


def test_a_job_given_gpus_without_usable_cuda_stops_at_once_naming_the_build(monkeypatch):
    import torch

    from stages.common import devices

    def unusable():
        import warnings

        warnings.warn("The NVIDIA driver on your system is too old (found version 11040).")
        return False

    monkeypatch.setattr(torch.cuda, "is_available", unusable)
    monkeypatch.setenv(devices.GPUS_ENV, "8")
    with pytest.raises(devices.GpuUnusable, match=rf"asks for 8 GPU.*torch {re.escape(torch.__version__)}.*too old"):
        devices.cuda_for_job()
    monkeypatch.setenv(devices.GPUS_ENV, "0")
    assert devices.cuda_for_job() is False  # a CPU job on a CPU machine: no error


GPU_RULES = ("train_codec", "extract_codes", "pretrain", "sft", "synthesize")


def local_plan(workdir, *args, env_extra=None):
    """The local dry run's jobs, with CUDA_VISIBLE_DEVICES as a stand-in for the machine's GPUs."""
    env = {**os.environ, **(env_extra or {})}
    command = [*snakemake_command(workdir), "--dry-run", "--printshellcmds", "--cores", "2", *args]
    out = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300, check=True).stdout
    return jobs_by_rule(out)


def test_a_local_run_gives_gpu_rules_the_gpus_the_machine_has(tmp_path):
    # a CPU machine: every GPU rule is scaled down to gpu=0 and runs on the CPU, none is refused for lack of CUDA
    jobs = local_plan(tmp_path / "cpu", env_extra={"CUDA_VISIBLE_DEVICES": ""})
    for rule in GPU_RULES:
        assert {job["gpu"] for job in jobs[rule]} == {"0"}, rule
    assert "MINIMIND_GPUS=0 python -m stages.extract_codes" in jobs["extract_codes"][0]["shell"]
    assert "torchrun.sh 1 0 -m stages.train_lm" in jobs["pretrain"][0]["shell"]  # nodes 1, gpus 0: one CPU process
    # two GPUs: one-GPU jobs ask for one each (so at most two run at once), training uses both
    jobs = local_plan(tmp_path / "two", env_extra={"CUDA_VISIBLE_DEVICES": "0,1"})
    assert {job["gpu"] for rule in ("train_codec", "extract_codes", "synthesize") for job in jobs[rule]} == {"1"}
    assert jobs["pretrain"][0]["gpu"] == "2" and jobs["sft"][0]["gpu"] == "2"
    # the command line (or the profile) sets the limit: one card shared in turn by every GPU job
    jobs = local_plan(tmp_path / "one", "--resources", "gpu=1", env_extra={"CUDA_VISIBLE_DEVICES": "0,1"})
    assert {job["gpu"] for rule in GPU_RULES for job in jobs[rule]} == {"1"}


def test_one_gpu_jobs_on_a_multi_gpu_machine_take_different_cards(tmp_path):
    from stages.common import devices

    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; sys.path.insert(0, sys.argv[1]); from stages.common.devices import "
         "claim_gpu; print(claim_gpu(3, sys.argv[2]), flush=True); time.sleep(60)", str(REPO), str(tmp_path)],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "0"  # another job holds card 0
        assert devices.claim_gpu(3, tmp_path) == 1
        assert devices.claim_gpu(3, tmp_path) == 2
        with pytest.raises(devices.GpuUnusable, match="all 3 GPUs of this machine are held"):
            devices.claim_gpu(3, tmp_path)
    finally:
        holder.kill()
        holder.wait()
    assert devices.claim_gpu(3, tmp_path) == 0  # a finished job's card is free again
