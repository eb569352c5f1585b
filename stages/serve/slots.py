"""Admission control: at most `concurrency` syntheses run, at most `queue_size` more wait, the rest are refused.

    slots = SynthesisSlots(concurrency=2, queue_size=4)
    await slots.acquire()      # raises Busy when running + waiting is full; waits in FIFO order otherwise
    try: ... finally: slots.release("completed")    # or "cancelled" (the client left), "failed"

Lives on the event loop (asyncio), so counting needs no lock: only the synthesis itself runs in a thread.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Literal

Outcome = Literal["completed", "cancelled", "failed"]


class Busy(Exception):
    """Every synthesis slot and every queue place is taken."""


@dataclass(frozen=True)
class SlotCounts:
    running: int
    waiting: int
    completed: int   # syntheses that ran to their end
    cancelled: int   # syntheses stopped early because the client went away
    failed: int      # syntheses refused or broken by an error


class SynthesisSlots:
    def __init__(self, concurrency: int, queue_size: int):
        self.concurrency, self.queue_size = concurrency, queue_size
        self._semaphore = asyncio.Semaphore(concurrency)
        self._admitted = 0  # running + waiting
        self._running = 0
        self._outcomes: dict[str, int] = {"completed": 0, "cancelled": 0, "failed": 0}

    async def acquire(self) -> None:
        """Take a slot, waiting for one if the queue has room; Busy at once if it has none."""
        if self._admitted >= self.concurrency + self.queue_size:
            raise Busy(f"{self._running} syntheses running and {self._admitted - self._running} waiting")
        self._admitted += 1
        try:
            # asyncio's Semaphore hands a slot won at the moment of cancellation on to the next waiter
            await self._semaphore.acquire()
        except BaseException:
            self._admitted -= 1
            raise
        self._running += 1

    def release(self, outcome: Outcome) -> None:
        """Give the slot back, counting how its synthesis ended."""
        self._running -= 1
        self._admitted -= 1
        self._outcomes[outcome] += 1
        self._semaphore.release()

    def counts(self) -> SlotCounts:
        return SlotCounts(self._running, self._admitted - self._running, **self._outcomes)
