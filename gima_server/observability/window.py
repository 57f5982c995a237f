"""Recent samples for the summary endpoint: percentiles over the last few minutes.

Prometheus histograms answer "how many below X since start"; operators asking "p99 right now" need a
window, which prometheus-client does not keep — hence these few timestamped samples.
"""

from __future__ import annotations

import bisect
import math
import time
from array import array
from typing import Callable


class RecentSamples:
    """At most max_samples (time, value) pairs from the last window_s seconds, kept as two arrays of doubles
    (16 bytes a sample, against ~110 for a deque of tuples of floats: one sample is taken per open stream)."""

    def __init__(self, window_s: float = 300.0, max_samples: int = 5000, clock: Callable[[], float] = time.monotonic) -> None:
        self._window_s = window_s
        self._max_samples = max_samples
        self._clock = clock
        self._times = array("d")
        self._values = array("d")

    def add(self, value: float) -> None:
        self._times.append(self._clock())
        self._values.append(value)
        if len(self._times) >= self._max_samples + max(1, self._max_samples // 4):
            self._drop(len(self._times) - self._max_samples)  # in bunches: one move of the arrays per quarter

    def _drop(self, count: int) -> None:
        del self._times[:count]
        del self._values[:count]

    def _recent(self) -> list[float]:
        horizon = self._clock() - self._window_s
        old = bisect.bisect_left(self._times, horizon)
        if old:
            self._drop(old)
        return self._values.tolist()[-self._max_samples:]

    def _oldest(self) -> float:
        return self._times[max(0, len(self._times) - self._max_samples)]

    def count(self) -> int:
        return len(self._recent())

    def rate_per_s(self) -> float:
        """Sum of values per second over the window (e.g. events sent per second)."""
        values = self._recent()
        if not values:
            return 0.0
        span = max(1.0, min(self._window_s, self._clock() - self._oldest()))
        return sum(values) / span

    def percentiles(self, *qs: float) -> dict[str, float | None]:
        values = sorted(self._recent())
        return {f"p{round(q * 100)}": _nearest_rank(values, q) for q in qs}


def _nearest_rank(ordered: list[float], q: float) -> float | None:
    if not ordered:
        return None
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]
