"""When a reply's subscribers are woken: at once on an idle server, at most once per window on a busy one.

Each wake-up costs a task switch and a socket write per subscriber. On a busy loop (lagging), waking a reply's
subscribers once per window instead of once per event makes each write carry several events: fewer switches and
system calls when they matter most, and nothing added when the server is idle. The first and the last events of
a reply are never held back.
"""

from __future__ import annotations

import asyncio
from typing import Callable, Protocol


class Wakeable(Protocol):
    def wake(self) -> None: ...


class Wakeups:
    def __init__(self, lag_s: Callable[[], float], max_window_s: float = 0.05, idle_lag_s: float = 0.005) -> None:
        self._lag_s = lag_s
        self._max_window_s = max_window_s
        self._idle_lag_s = idle_lag_s
        self._pending: dict[Wakeable, None] = {}  # insertion-ordered, emptied at each flush (one window at most)
        self._handle: asyncio.Handle | asyncio.TimerHandle | None = None

    def window_s(self) -> float:
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
