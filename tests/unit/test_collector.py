"""The cycle collector pauses while the loop is busy, resumes when it is idle, and never stays paused for ever."""

from __future__ import annotations

import asyncio
import gc

from gima_server.collector import CollectorPacer

from ..fakes import FakeClock


class Collector:
    """Counts what the pacer asked of the collector."""

    def __init__(self) -> None:
        self.freezes = self.unfreezes = 0
        self.young = 20_000

    def young_threshold(self, threshold: int) -> int:
        before, self.young = self.young, threshold
        return before

    def freeze(self) -> None:
        self.freezes += 1

    def unfreeze(self) -> None:
        self.unfreezes += 1


def _pacer(share: list[float], clock: FakeClock, collector: Collector) -> CollectorPacer:
    return CollectorPacer(lambda: share[0], max_paused_s=60, rest_s=10, clock=clock, freeze=collector.freeze,
                          unfreeze=collector.unfreeze, young_threshold=collector.young_threshold)


def test_an_idle_loop_leaves_the_collector_alone() -> None:
    share, clock, collector = [0.3], FakeClock(), Collector()
    pacer = _pacer(share, clock, collector)
    for _ in range(10):
        pacer.tick()
        clock.now += 0.05
    assert (collector.freezes, collector.unfreezes, pacer.paused) == (0, 0, False)


def test_a_busy_loop_pauses_it_each_tick_until_the_share_falls_below_the_lower_threshold() -> None:
    share, clock, collector = [0.9], FakeClock(), Collector()
    pacer = _pacer(share, clock, collector)
    pacer.tick()
    assert pacer.paused and collector.freezes == 1
    assert collector.young == 200_000, "young passes between two ticks would still examine each survivor"
    share[0] = 0.6  # between the thresholds: still paused, and what the loop allocated meanwhile joins
    pacer.tick()
    assert pacer.paused and collector.freezes == 2 and collector.unfreezes == 0
    share[0] = 0.4
    pacer.tick()
    assert not pacer.paused and (collector.freezes, collector.unfreezes) == (2, 1)
    assert collector.young == 20_000
    pacer.tick()
    assert (collector.freezes, collector.unfreezes) == (2, 1)


def test_a_load_that_never_lets_up_gives_the_collector_its_turn_after_the_longest_pause() -> None:
    share, clock, collector = [1.0], FakeClock(), Collector()
    pacer = _pacer(share, clock, collector)
    pacer.tick()
    clock.now += 59.9
    pacer.tick()
    assert pacer.paused and collector.unfreezes == 0
    clock.now += 0.1
    pacer.tick()
    assert not pacer.paused and collector.unfreezes == 1 and collector.young == 20_000
    clock.now += 9.9
    pacer.tick()
    assert not pacer.paused, "paused again before the collector's rest was over"
    clock.now += 0.1
    pacer.tick()
    assert pacer.paused and collector.freezes == 3


def test_the_real_collector_leaves_out_what_a_busy_spell_allocated_until_it_resumes() -> None:
    share = [1.0]
    pacer = CollectorPacer(lambda: share[0])
    frozen_before, threshold_before = gc.get_freeze_count(), gc.get_threshold()
    made_while_busy: list[object] = [[n] for n in range(100)]
    try:
        pacer.tick()
        assert gc.get_freeze_count() >= frozen_before + 100
        assert not any(obj is made_while_busy for obj in gc.get_objects())
        assert gc.get_threshold()[0] == 200_000
        share[0] = 0.0
        pacer.tick()
        assert gc.get_freeze_count() == 0 and gc.get_threshold() == threshold_before
        assert any(obj is made_while_busy for obj in gc.get_objects())
    finally:
        pacer.resume()
        if frozen_before:
            gc.freeze()  # as the process had it


async def test_a_stopped_pacer_hands_everything_back() -> None:
    share, collector = [1.0], Collector()
    pacer = CollectorPacer(lambda: share[0], freeze=collector.freeze, unfreeze=collector.unfreeze,
                           young_threshold=collector.young_threshold)
    task = asyncio.create_task(pacer.run(interval_s=0.001, idle_interval_s=0.001))
    for _ in range(100):
        await asyncio.sleep(0.005)
        if pacer.paused:
            break
    assert pacer.paused
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert not pacer.paused and collector.unfreezes == 1 and collector.young == 20_000
