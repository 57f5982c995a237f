"""The cycle collector paced by the event loop's load (ADR 26).

A reply's objects live as long as the reply, so the collector's passes examine each of them — several times, for
nothing: the server makes no reference cycles in its steady state (tests/integration/test_replay_log_bounds.py
guards the ones it made), and refcounting frees all the rest. Measured, the passes cost about a tenth of a busy
server's CPU and paused its loop for up to 230 ms at a time (bench/README.md). While the loop is busy, what it
allocated since the last tick is frozen out of the passes; when it is idle again (or after a bounded spell), it is
handed back, and whatever cycles that spell made wait for the collector's next full pass as any old object does.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from typing import AsyncIterator, Callable

from aiohttp import web

from .background import stop_tasks
from .streams.wakeups import BusyMeter

log = logging.getLogger("gima.collector")


def set_young_threshold(threshold: int) -> int:
    """Set the collector's young-generation threshold; the one it had."""
    before, *older = gc.get_threshold()
    gc.set_threshold(threshold, *older)
    return before


class CollectorPacer:
    """busy_on/busy_off: the loop's CPU share at which the collector pauses, and below which it resumes (two
    thresholds, as the wake-ups' (ADR 9): pausing itself lowers the share). max_paused_s bounds a spell under a
    load that never lets up; rest_s is how long the collector then runs its normal course before it may pause
    again."""

    def __init__(
        self,
        busy_share: Callable[[], float],
        busy_on: float = 0.8,
        busy_off: float = 0.5,
        max_paused_s: float = 60.0,
        rest_s: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
        freeze: Callable[[], None] = gc.freeze,
        unfreeze: Callable[[], None] = gc.unfreeze,
        young_threshold: Callable[[int], int] = set_young_threshold,
        paused_young_threshold: int = 200_000,
    ) -> None:
        self._busy_share = busy_share
        self._busy_on = busy_on
        self._busy_off = busy_off
        self._max_paused_s = max_paused_s
        self._rest_s = rest_s
        self._clock = clock
        self._freeze = freeze
        self._unfreeze = unfreeze
        self._young_threshold = young_threshold
        self._paused_young_threshold = paused_young_threshold
        self._young_threshold_before = 0
        self._paused_since: float | None = None
        self._rest_until = 0.0

    @property
    def paused(self) -> bool:
        return self._paused_since is not None

    def tick(self) -> None:
        share, now = self._busy_share(), self._clock()
        if self._paused_since is None:
            if share >= self._busy_on and now >= self._rest_until:
                self._paused_since = now
                # A pass between two ticks would still examine every young survivor: none is due any more
                # unless a tick's allocations alone outgrow this.
                self._young_threshold_before = self._young_threshold(self._paused_young_threshold)
                self._freeze()
            return
        if share < self._busy_off or now - self._paused_since >= self._max_paused_s:
            if share >= self._busy_off:
                self._rest_until = now + self._rest_s
                log.info("the loop stayed busy for %.0f s: the cycle collector runs again for %.0f s",
                         now - self._paused_since, self._rest_s)
            self._hand_back()
            return
        self._freeze()  # what the loop allocated since the last tick joins what is already out of the passes

    def resume(self) -> None:
        """Hand everything back to the collector (at shutdown, or when pacing stops)."""
        if self._paused_since is not None:
            self._hand_back()

    def _hand_back(self) -> None:
        self._paused_since = None
        self._young_threshold(self._young_threshold_before)
        self._unfreeze()

    async def run(self, interval_s: float = 0.05, idle_interval_s: float = 0.25) -> None:
        """Ticks every interval_s while paused (what the loop allocates between two ticks is what a young pass
        would examine), every idle_interval_s otherwise: an idle server wakes for it four times a second."""
        try:
            while True:
                await asyncio.sleep(interval_s if self.paused else idle_interval_s)
                self.tick()
        finally:
            self.resume()


async def pace_collector(app: web.Application) -> AsyncIterator[None]:
    """The server process's pacer (a cleanup context: the collector is the process's, so only `serve` adds it, not
    every app a test makes)."""
    pacer = CollectorPacer(BusyMeter(interval_s=0.05).share)
    task = asyncio.create_task(pacer.run())
    yield
    await stop_tasks([task])
