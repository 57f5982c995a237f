"""Recent samples for the summary endpoint: percentiles over the last few minutes.

Prometheus histograms answer "how many below X since start"; operators asking "p99 right now" need a
window, which prometheus-client does not keep — hence this small ring of timestamped samples.
"""

from __future__ import annotations

import math
import time
from collections import deque
from typing import Callable


class RecentSamples:
    def __init__(self, window_s: float = 300.0, max_samples: int = 5000, clock: Callable[[], float] = time.monotonic) -> None:
        self._window_s = window_s
        self._clock = clock
        self._samples: deque[tuple[float, float]] = deque(maxlen=max_samples)

    def add(self, value: float) -> None:
        self._samples.append((self._clock(), value))

    def _recent(self) -> list[float]:
        horizon = self._clock() - self._window_s
        while self._samples and self._samples[0][0] < horizon:
            self._samples.popleft()
        return [value for _, value in self._samples]

    def count(self) -> int:
        return len(self._recent())

    def rate_per_s(self) -> float:
        """Sum of values per second over the window (e.g. events sent per second)."""
        values = self._recent()
        if not values:
            return 0.0
        span = max(1.0, min(self._window_s, self._clock() - self._samples[0][0]))
        return sum(values) / span

    def percentiles(self, *qs: float) -> dict[str, float | None]:
        values = sorted(self._recent())
        return {f"p{round(q * 100)}": _nearest_rank(values, q) for q in qs}


def _nearest_rank(ordered: list[float], q: float) -> float | None:
    if not ordered:
        return None
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]
