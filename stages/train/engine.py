"""The DeepSpeed side of a training step: engine configuration, optimizer and schedule, one optimizer step.

    python -c "from stages.train.engine import deepspeed_config; from stages.config.pretrain import TrainConfig; \
print(deepspeed_config(TrainConfig(), world_size=1, precision='fp32'))"

Shared by the trainer (loop.py) and benchmarks/bench_train.py, so the benchmark times the stage's own step.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Sequence

import torch

from stages.config.base import ConfigError
from stages.lm.model import MiniMindTTS
from stages.lm.vocab import IGNORE_INDEX
from stages.config.pretrain import TrainConfig
from stages.train.data import Batch
from stages.train.distributed import Dist
from stages.train.schedule import warmup_cosine


@dataclass
class StepStats:
    """One optimizer step, summed over its micro-batches and all processes."""

    loss_sum: float = 0.0       # cross-entropy x supervised targets
    correct: float = 0.0        # accuracy x supervised targets
    targets: float = 0.0
    aux_sum: float = 0.0        # MoE load-balancing loss, summed over micro-batches
    micro_batches: float = 0.0
    real_tokens: float = 0.0
    padded_tokens: float = 0.0

    def add(self, other: "StepStats") -> "StepStats":
        return StepStats(*(a + b for a, b in zip(dataclasses.astuple(self), dataclasses.astuple(other))))

    def all_reduce(self, dist: Dist) -> "StepStats":
        if dist.world_size == 1:
            return self
        values = torch.tensor(dataclasses.astuple(self), dtype=torch.float64, device=dist.device)
        torch.distributed.all_reduce(values)
        return StepStats(*values.tolist())

    @property
    def loss(self) -> float:
        return self.loss_sum / max(self.targets, 1.0)

    @property
    def accuracy(self) -> float:
        return self.correct / max(self.targets, 1.0)

    @property
    def nonpad_share(self) -> float:
        return self.real_tokens / max(self.padded_tokens, 1.0)


def resolve_precision(setting: str, device: torch.device, section: str = "train") -> str:
    """auto: bf16 on a GPU with native bf16, fp32 elsewhere; bf16 on a GPU that only emulates it is refused.

    An emulated-bf16 GPU (before Ampere) runs bf16 matmuls as fp32 with conversions: slower than fp32 and
    no more precise than bf16, so training in it is a mistake to stop, not to warn about.
    """
    native = device.type == "cuda" and torch.cuda.is_bf16_supported(including_emulation=False)
    if setting == "bf16" and device.type == "cuda" and not native:
        raise ConfigError(f"{section}.precision: bf16 is only emulated on {torch.cuda.get_device_name(device)}; "
                          "train in fp32 (precision: fp32 or auto)")
    if setting != "auto":
        return setting
    return "bf16" if native else "fp32"


def deepspeed_config(config: TrainConfig, world_size: int, precision: str) -> dict:
    """configs/deepspeed/zero<N>.json plus what the run decides: accumulation, clipping, precision."""
    ds = {k: v for k, v in json.loads(config.deepspeed_config.read_text()).items() if not k.startswith("_")}
    # one micro-batch is one dynamic batch of many utterances; DeepSpeed only needs the count
    ds.update(train_micro_batch_size_per_gpu=1, gradient_accumulation_steps=config.grad_accum,
              train_batch_size=config.grad_accum * world_size, gradient_clipping=config.grad_clip)
    ds["bf16"] = {"enabled": precision == "bf16"}
    return ds


def optimizer_and_schedule(model: torch.nn.Module, config: TrainConfig, total_steps: int):
    """torch's AdamW (decay on matrices only) and the warm-up + cosine schedule.

    torch's AdamW, not DeepSpeed's: FusedAdam / DeepSpeedCPUAdam are JIT-compiled on first use (80-100 s)
    and give the same updates.
    """
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": config.weight_decay},
                                   {"params": no_decay, "weight_decay": 0.0}], lr=config.lr, betas=tuple(config.betas))
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, warmup_cosine(config.warmup_steps, total_steps, config.min_lr / config.lr))
    return optimizer, schedule


def build_engine(model: MiniMindTTS, config: TrainConfig, world_size: int, precision: str, total_steps: int):
    """The DeepSpeed engine around `model`, in a process group that is already up (see distributed.py)."""
    import deepspeed

    optimizer, schedule = optimizer_and_schedule(model, config, total_steps)
    engine, *_ = deepspeed.initialize(model=model, optimizer=optimizer, lr_scheduler=schedule,
                                      config=deepspeed_config(config, world_size, precision), dist_init_required=False)
    return engine


def global_targets(batches: Sequence[Batch], dist: Dist | None) -> int:
    """Supervised targets of this optimizer step: every micro-batch, summed over all processes (one collective)."""
    local = sum(int((b.targets != IGNORE_INDEX).sum()) for b in batches)  # CPU tensors: no device sync
    if dist is None or dist.world_size == 1:
        return local
    total = torch.tensor([local], dtype=torch.int64, device=dist.device)
    torch.distributed.all_reduce(total)
    return int(total.item())


def train_step(engine, batches: Sequence[Batch], device: torch.device, dist: Dist | None = None) -> StepStats:
    """Forward and backward over `batches`, the micro-batches of one optimizer step (the engine steps at the last).

    The loss is the cross-entropy summed over the step's targets, divided by their count over all micro-batches
    and processes: every target weighs the same, however the batches are cut. DeepSpeed divides each backward by
    the accumulation steps and averages gradients over processes, so each micro-batch's sum is scaled by
    (micro-batches x processes) / targets to undo both. With one micro-batch on one process that is the mean.
    """
    world = dist.world_size if dist is not None else 1
    scale = len(batches) * world / max(global_targets(batches, dist), 1)
    aux_weight = engine.module.config.aux_loss_weight
    sums = torch.zeros(4, dtype=torch.float64, device=device)
    for batch in batches:
        out = engine(batch.input_ids.to(device, non_blocking=True), targets=batch.targets.to(device, non_blocking=True))
        engine.backward(out.ce_loss * out.n_targets * scale + aux_weight * out.aux_loss)
        engine.step()
        n = out.n_targets.detach().double()
        sums += torch.stack([out.ce_loss.detach().double() * n, out.accuracy.detach().double() * n, n,
                             out.aux_loss.detach().double()])
    loss_sum, correct, targets, aux = sums.tolist()  # one device sync per step, not per micro-batch
    return StepStats(loss_sum, correct, targets, aux, float(len(batches)), float(sum(b.real_tokens for b in batches)),
                     float(sum(b.padded_tokens for b in batches)))
