"""Batches built ahead of the training step, in a background thread, so the accelerator never waits on the host.

    with Prefetched(trainer.data.stream(position), depth=2, pin_memory=True) as stream:
        batch, position = next(stream)

Reading codes from Parquet and padding them into tensors is host work; on the main thread it runs in series
with the GPU. A thread suffices: the stream's order is fixed by (seed, epoch) with no shared random state, and
the heavy parts (Parquet, numpy, torch) release the GIL. Items come out in the stream's order, each with the
position after it, so resuming from the position of the last batch consumed (not the last one built) stays
exact. Pinned host memory lets the copy to the GPU run asynchronously (`non_blocking=True`).
"""

from __future__ import annotations

import queue
import threading
from dataclasses import replace
from typing import Iterator, TypeVar

from stages.train.data import Batch

Item = TypeVar("Item")
_END = object()


def pinned(batch: Batch) -> Batch:
    return replace(batch, input_ids=batch.input_ids.pin_memory(), targets=batch.targets.pin_memory())


class Prefetched:
    """`(batch, position)` pairs of `stream`, up to `depth` of them built ahead by a daemon thread.

    An error in the stream is raised by the `next` that would have returned its item. `close` (or leaving
    the `with` block) stops the thread; it then drops what it built ahead.
    """

    def __init__(self, stream: Iterator[tuple[Batch, Item]], depth: int = 2, pin_memory: bool = False):
        if depth < 1:
            raise ValueError(f"prefetch depth must be at least 1, not {depth}")
        self.stream, self.pin_memory = stream, pin_memory
        self.ready: queue.Queue = queue.Queue(maxsize=depth)
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._fill, name="batch-prefetch", daemon=True)
        self.thread.start()

    def _put(self, item) -> bool:
        """Queue `item`, waiting for room; False once the consumer has closed the stream."""
        while not self.stopping.is_set():
            try:
                self.ready.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _fill(self) -> None:
        try:
            for batch, position in self.stream:
                if not self._put((pinned(batch) if self.pin_memory else batch, position)):
                    return
            self._put(_END)
        except BaseException as error:  # handed to the consumer, which raises it where the item was due
            self._put(error)

    def __iter__(self) -> "Prefetched":
        return self

    def __next__(self) -> tuple[Batch, Item]:
        if self.stopping.is_set():
            raise StopIteration
        item = self.ready.get()
        if item is _END:
            self.stopping.set()
            raise StopIteration
        if isinstance(item, BaseException):
            self.stopping.set()
            raise item
        return item

    def close(self) -> None:
        self.stopping.set()
        self.thread.join(timeout=10)

    def __enter__(self) -> "Prefetched":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
