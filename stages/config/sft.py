"""The `sft` section: supervised fine-tuning, the pretrain run continued from its weights on a subset.

Its keys are the pretrain section's (stages/config/pretrain.py); set a lower lr, fewer steps, and the
speakers or languages it trains on.
"""

from __future__ import annotations

from dataclasses import dataclass

from stages.config.pretrain import TrainConfig


@dataclass(frozen=True)
class SftConfig(TrainConfig):
    """Supervised fine-tuning from the pretrained model (stage sft), with the keys of `pretrain`."""
