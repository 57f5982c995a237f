"""When a reply's subscribers are woken: at once on an idle server, at most once per window on a busy one.

Each wake-up costs a task switch and a socket write per subscriber. On a busy loop, waking a reply's subscribers
once per window instead of once per event makes each write carry several events: fewer switches and system calls
when they matter most, and nothing added when the server is idle. The first and the last events of a reply are
never held back.

"Busy" is either of two signals. The loop's own CPU share (`BusyMeter`) sees saturation within a tenth of a
second; the lag (timers firing late, sampled every quarter second and smoothed) sees it only once turns have grown
past 5 ms, which a ramp of new streams reaches after it has already queued them (bench.paced, issue 26).
"""

from __future__ import annotations

import asyncio
import time
from typing import Callable, Protocol


class Wakeable(Protocol):
    def wake(self) -> None: ...


class BusyMeter:
    """The event-loop thread's share of one core over the last interval: its CPU time over the wall time.

    Read from the loop thread only (thread_time is the calling thread's). Sampled lazily, when asked and an
    interval has passed, so an idle server spends nothing on it; after a quiet spell the long interval reads low.
    """

    def __init__(
        self,
        interval_s: float = 0.1,
        cpu_clock: Callable[[], float] = time.thread_time,
        wall_clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._interval_s = interval_s
        self._cpu_clock = cpu_clock
        self._wall_clock = wall_clock
        self._since = wall_clock()
        self._cpu_since = cpu_clock()
        self._share = 0.0

    def share(self) -> float:
        now = self._wall_clock()
        elapsed = now - self._since
        if elapsed >= self._interval_s:
            cpu = self._cpu_clock()
            self._share = (cpu - self._cpu_since) / elapsed
            self._since, self._cpu_since = now, cpu
        return self._share


class Wakeups:
    """busy_on/busy_off: the loop's CPU share at which holding starts, and below which it stops again. Holding
    itself lowers the share (measured: ~0.95 → ~0.6 in bench.paced's ramp), so one threshold would flap."""

    def __init__(
        self,
        lag_s: Callable[[], float],
        max_window_s: float = 0.05,
        idle_lag_s: float = 0.005,
        busy_share: Callable[[], float] = lambda: 0.0,
        busy_on: float = 0.8,
        busy_off: float = 0.5,
    ) -> None:
        self._lag_s = lag_s
        self._max_window_s = max_window_s
        self._idle_lag_s = idle_lag_s
        self._busy_share = busy_share
        self._busy_on = busy_on
        self._busy_off = busy_off
        self._busy = False
        self._pending: dict[Wakeable, None] = {}  # insertion-ordered, emptied at each flush (one window at most)
        self._handle: asyncio.Handle | asyncio.TimerHandle | None = None

    def window_s(self) -> float:
        share = self._busy_share()
        if share >= self._busy_on:
            self._busy = True
        elif share < self._busy_off:
            self._busy = False
        if self._busy:
            return self._max_window_s
        lag = self._lag_s()
        return 0.0 if lag < self._idle_lag_s else min(self._max_window_s, lag)

    def later(self, target: Wakeable) -> None:
        self._pending[target] = None
        if self._handle is None:
            loop = asyncio.get_running_loop()
            window = self.window_s()
            self._handle = loop.call_later(window, self._flush) if window else loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._handle = None
        pending, self._pending = self._pending, {}
        for target in pending:
            target.wake()

    def close(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
        self._flush()
