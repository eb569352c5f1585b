"""The DeepSpeed side of a training step: engine configuration, optimizer and schedule, one optimizer step.

    python -c "from stages.train.engine import deepspeed_config; from stages.config.pretrain import TrainConfig; \
print(deepspeed_config(TrainConfig(), world_size=1, precision='fp32'))"

Shared by the trainer (loop.py) and benchmarks/bench_train.py, so the benchmark times the stage's own step.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import torch

from stages.config.base import ConfigError
from stages.lm.model import MiniMindTTS
from stages.lm.vocab import IGNORE_INDEX
from stages.config.pretrain import TrainConfig
from stages.lm.alignment_loss import AlignmentObjective
from stages.train.data import Batch
from stages.train.distributed import Dist
from stages.train.schedule import warmup_cosine


@dataclass
class StepStats:
    """Optimizer steps, read out: summed over their micro-batches and all processes."""

    loss_sum: float = 0.0       # cross-entropy x supervised targets
    correct: float = 0.0        # accuracy x supervised targets
    targets: float = 0.0
    aux_sum: float = 0.0        # MoE load-balancing loss, summed over micro-batches
    alignment_sum: float = 0.0  # CTC alignment loss (unweighted), summed over micro-batches
    micro_batches: float = 0.0
    real_tokens: float = 0.0
    padded_tokens: float = 0.0

    @property
    def loss(self) -> float:
        return self.loss_sum / max(self.targets, 1.0)

    @property
    def accuracy(self) -> float:
        return self.correct / max(self.targets, 1.0)

    @property
    def nonpad_share(self) -> float:
        return self.real_tokens / max(self.padded_tokens, 1.0)


@dataclass
class StepSums:
    """Steps not yet read: the loss terms stay on the device and the counts, global already, on the host.

    Adding steps costs no sync; `read` costs one (and, with many processes, one collective), so the loop
    reads only at logging intervals.
    """

    device_sums: Optional[torch.Tensor] = None   # this process's (loss x targets, correct, aux, alignment), float64
    targets: int = 0                             # the counts below: every process's
    micro_batches: int = 0
    real_tokens: int = 0
    padded_tokens: int = 0

    def add(self, other: "StepSums") -> "StepSums":
        sums = other.device_sums if self.device_sums is None else self.device_sums + other.device_sums
        return StepSums(sums, self.targets + other.targets, self.micro_batches + other.micro_batches,
                        self.real_tokens + other.real_tokens, self.padded_tokens + other.padded_tokens)

    def read(self, dist: Optional[Dist] = None) -> StepStats:
        loss_sum = correct = aux = alignment = 0.0
        if self.device_sums is not None:
            sums = self.device_sums
            if dist is not None and dist.world_size > 1:
                sums = sums.clone()
                torch.distributed.all_reduce(sums)
            loss_sum, correct, aux, alignment = sums.tolist()
        return StepStats(loss_sum, correct, float(self.targets), aux, alignment, float(self.micro_batches),
                         float(self.real_tokens), float(self.padded_tokens))

    @property
    def loss(self) -> float:
        return self.read().loss


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


def optimizer_and_schedule(model: torch.nn.Module, config: TrainConfig, total_steps: Optional[int],
                           budget_spent: Optional[Callable[[], float]] = None):
    """torch's AdamW (decay on matrices only) and the warm-up + cosine schedule (schedule.py).

    torch's AdamW, not DeepSpeed's: FusedAdam / DeepSpeedCPUAdam are JIT-compiled on first use (80-100 s)
    and give the same updates.
    """
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": config.weight_decay},
                                   {"params": no_decay, "weight_decay": 0.0}], lr=config.lr, betas=tuple(config.betas))
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, warmup_cosine(config.warmup_steps, total_steps, config.min_lr / config.lr, budget_spent))
    return optimizer, schedule


def build_engine(model: MiniMindTTS, config: TrainConfig, world_size: int, precision: str,
                 total_steps: Optional[int], budget_spent: Optional[Callable[[], float]] = None):
    """The DeepSpeed engine around `model`, in a process group that is already up (see distributed.py)."""
    import deepspeed

    optimizer, schedule = optimizer_and_schedule(model, config, total_steps, budget_spent)
    engine, *_ = deepspeed.initialize(model=model, optimizer=optimizer, lr_scheduler=schedule,
                                      config=deepspeed_config(config, world_size, precision), dist_init_required=False)
    return engine


def global_counts(batches: Sequence[Batch], dist: Dist | None) -> tuple[int, int, int]:
    """Supervised targets, real and padded tokens of this optimizer step, over all processes: host values only.

    Batches are built on the host, so these are known before the forward and reduce on the CPU (one
    collective, Dist.sum_on_host) without waiting for the device.
    """
    local = [sum(int((b.targets != IGNORE_INDEX).sum()) for b in batches),
             sum(b.real_tokens for b in batches), sum(b.padded_tokens for b in batches)]
    targets, real, padded = dist.sum_on_host(local) if dist is not None else local
    return targets, real, padded


def train_step(engine, batches: Sequence[Batch], device: torch.device, dist: Dist | None = None,
               counts: Optional[tuple[int, int, int]] = None,
               attention_bias: Optional[Callable[[torch.Tensor], torch.Tensor]] = None,
               alignment: Optional[AlignmentObjective] = None) -> StepSums:
    """Forward and backward over `batches`, the micro-batches of one optimizer step (the engine steps at the last).

    The loss is the cross-entropy summed over the step's targets, divided by their count over all micro-batches
    and processes: every target weighs the same, however the batches are cut. DeepSpeed divides each backward by
    the accumulation steps and averages gradients over processes, so each micro-batch's sum is scaled by
    (micro-batches x processes) / targets to undo both. With one micro-batch on one process that is the mean.
    Nothing here waits for the device: the statistics come back as unread StepSums. `counts` are the
    batches' global_counts, when the caller needed them first. `attention_bias` maps a micro-batch's input ids
    on the device to the additive attention bias of its forward (the alignment prior), when there is one.
    With `alignment`, its weighted CTC loss joins each micro-batch's, a mean over micro-batches like MoE's aux loss.
    """
    world = dist.world_size if dist is not None else 1
    targets, real_tokens, padded_tokens = counts if counts is not None else global_counts(batches, dist)
    scale = len(batches) * world / max(targets, 1)
    aux_weight = engine.module.config.aux_loss_weight
    sums = torch.zeros(4, dtype=torch.float64, device=device)
    for batch in batches:
        input_ids = batch.input_ids.to(device, non_blocking=True)
        bias = attention_bias(input_ids) if attention_bias is not None else None
        positions = alignment.positions(input_ids) if alignment is not None else None
        out = engine(input_ids, targets=batch.targets.to(device, non_blocking=True), attention_bias=bias,
                     alignment=positions)
        loss = out.ce_loss * out.n_targets * scale + aux_weight * out.aux_loss
        alignment_loss = torch.zeros((), device=device)
        if alignment is not None:
            alignment_loss = alignment.loss(out.alignment_scores, positions)
            loss = loss + alignment.weight * alignment_loss
        engine.backward(loss)
        engine.step()
        n = out.n_targets.detach().double()
        sums += torch.stack([out.ce_loss.detach().double() * n, out.accuracy.detach().double() * n,
                             out.aux_loss.detach().double(), alignment_loss.detach().double()])
    return StepSums(sums, targets, len(batches) * world, real_tokens, padded_tokens)
