"""What a training run reports: metrics.jsonl and TensorBoard scalars in the checkpoint folder, and a progress bar.

    tensorboard --logdir results/demo/pretrain/checkpoints/tensorboard
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

METRICS_FILE = "metrics.jsonl"


class MetricsLog:
    """metrics.jsonl + TensorBoard scalars in the checkpoint folder, cut back to the resumed step."""

    def __init__(self, directory: Path, resumed_step: int, enabled: bool):
        self.enabled = enabled
        if not enabled:
            return
        from torch.utils.tensorboard import SummaryWriter

        self.path = Path(directory) / METRICS_FILE
        kept = []
        if self.path.exists():  # lines after the resumed step came from the killed run: they are redone
            for line in self.path.read_text().splitlines():
                try:
                    entry = json.loads(line)
                except json.JSONDecodeError:  # a line cut by the kill
                    continue
                if entry["step"] <= resumed_step:
                    kept.append(line)
        tmp = self.path.with_name(f".{METRICS_FILE}.tmp")  # replaced whole: a kill now cannot lose the kept lines
        tmp.write_text("".join(f"{line}\n" for line in kept))
        os.replace(tmp, self.path)
        self.file = open(self.path, "a", buffering=1)  # line-buffered: `tail -f` shows every entry
        self.tensorboard = SummaryWriter(str(Path(directory) / "tensorboard"), purge_step=resumed_step + 1)

    def write(self, step: int, kind: str, scalars: dict) -> None:
        if not self.enabled:
            return
        self.file.write(json.dumps({"step": step, "kind": kind, **scalars}) + "\n")
        for name, value in scalars.items():
            self.tensorboard.add_scalar(f"{kind}/{name}", value, step)

    def flush(self) -> None:
        if self.enabled:
            self.file.flush()
            self.tensorboard.flush()

    def close(self) -> None:
        if self.enabled:
            self.file.close()
            self.tensorboard.close()


def progress_bar(total: int, initial: int, enabled: bool):
    from tqdm import tqdm

    interactive = sys.stderr.isatty()
    return tqdm(total=total, initial=initial, disable=not enabled, desc="train", unit="step", dynamic_ncols=True,
                mininterval=0.5 if interactive else 30.0)
