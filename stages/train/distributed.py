"""Start the process group the trainer runs in: one CPU process, one GPU, many GPUs or many nodes.

    torchrun --standalone --nproc_per_node 2 -m stages.train_lm ...    # torchrun sets RANK, WORLD_SIZE, ...
    python -m stages.train_lm ...                                      # one process: the defaults below

On the CPU the backend is gloo and DeepSpeed's accelerator `cpu`. DeepSpeed would JIT-compile its
shared-memory all-reduce op there (60-90 s, even for one process); we mark it incompatible before the
process group starts, so DeepSpeed falls back to plain torch.distributed collectives and compiles nothing.
"""

from __future__ import annotations

import logging
import os
import socket
import warnings
from dataclasses import dataclass

import torch

from stages.common.devices import cuda_for_job

SHM_COMM_OP = "deepspeed_shm_comm"   # ShareMemCommBuilder.NAME in deepspeed/ops/op_builder/cpu/comm.py


@dataclass(frozen=True)
class Dist:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    # a gloo group beside NCCL for values the host already knows (token counts): reducing them there never
    # waits for the GPU's queued work; None is the default group, which on the CPU is gloo already
    host_group: object = None

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def sum_on_host(self, values: list[int]) -> list[int]:
        """`values` summed over all processes, on the CPU: no device sync."""
        if self.world_size == 1:
            return list(values)
        total = torch.tensor(values, dtype=torch.int64)
        torch.distributed.all_reduce(total, group=self.host_group)
        return total.tolist()


def single_process_defaults() -> list[str]:
    """Let a bare `python -m ...` run as a world of one: set the variables torchrun would have; return their names."""
    added = []
    defaults = {"RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "1", "MASTER_ADDR": "127.0.0.1"}
    if "MASTER_PORT" not in os.environ:
        with socket.socket() as s:  # a free port, so parallel jobs on one machine never collide
            s.bind(("127.0.0.1", 0))
            defaults["MASTER_PORT"] = str(s.getsockname()[1])
    for name, value in defaults.items():
        if name not in os.environ:
            os.environ[name] = value
            added.append(name)
    return added


def init_distributed() -> Dist:
    """Join (or, in a world of one, create) the process group; pick this process's device.

    A job given GPUs (MINIMIND_GPUS) on which CUDA is unusable stops here, before any work (GpuUnusable).
    """
    cuda = cuda_for_job()
    if not cuda:
        os.environ.setdefault("DS_ACCELERATOR", "cpu")  # skips DeepSpeed's detection and its warning
    import deepspeed
    from deepspeed.utils import logger

    logger.setLevel(logging.WARNING)  # DeepSpeed logs every config key at INFO
    # torch deprecating collectives that DeepSpeed's ZeRO calls every step: nothing we can act on
    warnings.filterwarnings("ignore", message=r"`torch\.distributed\.\w+` is deprecated", category=FutureWarning)
    deepspeed.ops.__compatible_ops__[SHM_COMM_OP] = False
    if not torch.distributed.is_initialized():
        added = single_process_defaults()
        deepspeed.init_distributed(dist_backend="nccl" if cuda else "gloo")
        # the group is up; drop what we made up (DeepSpeed reads only LOCAL_RANK from here on), so a process
        # this one starts (a test running the CLI, Snakemake) never inherits the port our group listens on
        for name in added:
            if name != "LOCAL_RANK":
                del os.environ[name]
    else:
        deepspeed.init_distributed()  # an existing group (a second run in one process): DeepSpeed adopts it
    local_rank = int(os.environ["LOCAL_RANK"])
    if cuda:
        torch.cuda.set_device(local_rank)
    device = torch.device("cuda", local_rank) if cuda else torch.device("cpu")
    world_size = torch.distributed.get_world_size()
    host_group = None
    if torch.distributed.get_backend() != "gloo" and world_size > 1:
        host_group = torch.distributed.new_group(backend="gloo")  # every process calls it: a collective
    return Dist(torch.distributed.get_rank(), world_size, local_rank, device, host_group)
