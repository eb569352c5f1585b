"""The device a job runs on, and a clear failure when a job that asks for GPUs cannot use CUDA.

    MINIMIND_GPUS=8 torchrun ... -m stages.train_lm ...     # what workflow/scripts/torchrun.sh exports

A rule's `resources.gpu` reaches the job as MINIMIND_GPUS. When it asks for GPUs and CUDA is unusable (a
driver too old for the installed torch build, a CPU-only build, no device visible), the job stops at once
and says why, instead of training in fp32 on as many CPU processes.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import tempfile
import warnings
from pathlib import Path

import torch

GPUS_ENV = "MINIMIND_GPUS"


class GpuUnusable(RuntimeError):
    """The job was given GPUs, and this process cannot use CUDA."""


def requested_gpus() -> int:
    value = os.environ.get(GPUS_ENV, "").strip()
    return int(value) if value else 0


def nvidia_driver() -> str:
    if shutil.which("nvidia-smi") is None:
        return "no nvidia-smi on PATH (no NVIDIA driver installed?)"
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"nvidia-smi failed: {e}"
    versions = sorted(set(out.stdout.split()))
    return f"driver {', '.join(versions)}" if out.returncode == 0 and versions else f"nvidia-smi: {out.stderr.strip()}"


def cuda_for_job() -> bool:
    """Whether to run on CUDA: yes when it works; when the job asked for GPUs and it does not, GpuUnusable."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        usable = torch.cuda.is_available()
    wanted = requested_gpus()
    if wanted and not usable:
        built = f"CUDA {torch.version.cuda}" if torch.version.cuda else "no CUDA (a CPU-only build)"
        why = "; ".join(str(w.message).strip() for w in caught) or "torch.cuda.is_available() is False"
        raise GpuUnusable(f"the job asks for {wanted} GPU(s) ({GPUS_ENV}, from the rule's resources.gpu), but CUDA "
                          f"is unusable: torch {torch.__version__} is built for {built}; {nvidia_driver()}; {why}. "
                          "Install a torch build this driver supports, or run with gpu=0 to train on the CPU.")
    return usable


def claim_gpu(device_count: int, lock_dir: Path | None = None) -> int:
    """The index of a GPU no other job on this machine holds, held by this process until it exits.

    Snakemake lets as many one-GPU jobs run at once as the machine has GPUs (workflow/rules/common.smk), but
    does not say which card is whose; each job takes the first free one by an exclusive lock file.
    """
    lock_dir = Path(lock_dir or tempfile.gettempdir())
    for index in range(device_count):
        handle = open(lock_dir / f"minimind-gpu-{index}.lock", "w")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            continue
        _HELD_GPU_LOCKS.append(handle)  # the lock lasts as long as the open file
        return index
    raise GpuUnusable(f"all {device_count} GPUs of this machine are held by other jobs ({lock_dir}/minimind-gpu-*"
                      ".lock): run with --resources gpu=N, N at most the number of GPUs")


_HELD_GPU_LOCKS: list = []


def job_device(choice: str = "auto") -> str:
    """`auto`: cuda when usable (and required when the job was given GPUs), else cpu; anything else as given.

    A one-GPU job on a machine with several (not a torchrun worker, which has its LOCAL_RANK) gets a card no
    other job holds.
    """
    if choice != "auto":
        return choice
    if not cuda_for_job():
        return "cpu"
    count = torch.cuda.device_count()
    if requested_gpus() == 1 and count > 1 and "LOCAL_RANK" not in os.environ:
        return f"cuda:{claim_gpu(count)}"
    return "cuda"
