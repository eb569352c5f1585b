"""The learning-rate schedule: linear warm-up, then cosine decay to a floor.

    python -c "from stages.train.schedule import warmup_cosine as w; f = w(50, 600, 0.1); print(f(0), f(49), f(600))"
"""

from __future__ import annotations

import math
from typing import Callable, Optional


def warmup_cosine(warmup_steps: int, total_steps: Optional[int], min_ratio: float,
                  budget_spent: Optional[Callable[[], float]] = None) -> Callable[[int], float]:
    """lr multiplier of optimizer step `step` (0-based): (step+1)/warmup during warm-up, then a half cosine
    from 1 to `min_ratio` at `total_steps`, and `min_ratio` after that.

    `budget_spent` (a token-budget run) gives the share of the budget trained so far; the cosine then follows
    whichever of it and the share of `total_steps` (None: no step limit) is further on, as the run ends at
    whichever comes first. Tokens, not steps: a run resumed with another number of processes trains other
    tokens per step, and its lr stays continuous only on the budget's scale.

    A plain closure, not an object: torch's LambdaLR then saves no state of it in checkpoints, so a resumed
    run that trains longer gets the new horizon instead of the one saved.
    """
    def multiplier(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        if total_steps is not None and step >= total_steps:
            return min_ratio
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps) if total_steps is not None else 0.0
        if budget_spent is not None:
            progress = max(progress, budget_spent())
        if progress >= 1.0:
            return min_ratio
        return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))

    return multiplier
