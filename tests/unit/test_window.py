"""Recent samples: only the last window's, at most max_samples of them, oldest dropped first."""

from __future__ import annotations

from gima_server.observability.window import RecentSamples


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_samples_older_than_the_window_are_forgotten() -> None:
    clock = Clock()
    window = RecentSamples(window_s=10.0, max_samples=100, clock=clock)
    for value in (1.0, 2.0, 3.0):
        window.add(value)
        clock.now += 4.0
    assert window.count() == 2  # the first sample is 12 s old now
    assert window.percentiles(0.5, 1.0) == {"p50": 2.0, "p100": 3.0}
    clock.now += 100.0
    assert window.count() == 0 and window.rate_per_s() == 0.0 and window.percentiles(0.5) == {"p50": None}


def test_at_most_max_samples_are_kept_the_newest() -> None:
    clock = Clock()
    window = RecentSamples(window_s=1e9, max_samples=8, clock=clock)
    for i in range(1, 31):
        window.add(float(i))
        clock.now += 1.0
        assert window.count() == min(i, 8)
    assert window.percentiles(0.0, 1.0) == {"p0": 23.0, "p100": 30.0}


def test_rate_is_the_sum_over_the_span_of_the_kept_samples() -> None:
    clock = Clock()
    window = RecentSamples(window_s=60.0, max_samples=1000, clock=clock)
    for _ in range(10):
        window.add(5.0)
        clock.now += 2.0
    assert window.rate_per_s() == 50.0 / 20.0
