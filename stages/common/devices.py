"""The device a job runs on, and a clear failure when a job that asks for GPUs cannot use CUDA.

    MINIMIND_GPUS=8 torchrun ... -m stages.train_lm ...     # what workflow/scripts/torchrun.sh exports

A rule's `resources.gpu` reaches the job as MINIMIND_GPUS. When it asks for GPUs and CUDA is unusable (a
driver too old for the installed torch build, a CPU-only build, no device visible), the job stops at once
and says why, instead of training in fp32 on as many CPU processes.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import warnings

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


def job_device(choice: str = "auto") -> str:
    """`auto`: cuda when usable (and required when the job was given GPUs), else cpu; anything else as given."""
    if choice != "auto":
        return choice
    return "cuda" if cuda_for_job() else "cpu"
