"""A circuit breaker per upstream: after repeated failures, fail fast for a cool-down, then try one call."""

from __future__ import annotations

import time
from typing import Callable

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"


class CircuitOpen(Exception):
    def __init__(self, retry_after_s: float) -> None:
        super().__init__(f"circuit open, retry in {retry_after_s:.1f} s")
        self.retry_after_s = retry_after_s


class CircuitBreaker:
    def __init__(self, failures_to_open: int, cooldown_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._failures_to_open = failures_to_open
        self._cooldown_s = cooldown_s
        self._clock = clock
        self._failures = 0
        self._opened_at: float | None = None
        self._trial_running = False

    @property
    def state(self) -> str:
        if self._opened_at is None:
            return CLOSED
        return HALF_OPEN if self._clock() - self._opened_at >= self._cooldown_s else OPEN

    def before_call(self) -> None:
        """Raise CircuitOpen while open; in half-open, let exactly one trial call through."""
        state = self.state
        if state == CLOSED:
            return
        if state == HALF_OPEN and not self._trial_running:
            self._trial_running = True
            return
        assert self._opened_at is not None
        raise CircuitOpen(max(0.1, self._cooldown_s - (self._clock() - self._opened_at)))

    def success(self) -> None:
        self._failures = 0
        self._opened_at = None
        self._trial_running = False

    def failure(self) -> None:
        self._trial_running = False
        if self._opened_at is not None:
            self._opened_at = self._clock()  # the trial failed: another full cool-down
            return
        self._failures += 1
        if self._failures >= self._failures_to_open:
            self._opened_at = self._clock()
