"""Subscribers are woken at once on an idle loop, and once per window (not per event) on a busy one."""

from __future__ import annotations

import asyncio

import pytest

from gima_server.streams.wakeups import BusyMeter, Wakeups


class Target:
    def __init__(self) -> None:
        self.woken = 0

    def wake(self) -> None:
        self.woken += 1


async def test_idle_loop_wakes_at_the_end_of_the_turn_once_per_target() -> None:
    wakeups, target = Wakeups(lambda: 0.0), Target()
    for _ in range(5):
        wakeups.later(target)  # five events in one turn
    assert target.woken == 0
    await asyncio.sleep(0)
    assert target.woken == 1


async def test_busy_loop_holds_wakeups_for_the_window_then_wakes_each_target_once() -> None:
    lag = [0.5]
    wakeups, first, second = Wakeups(lambda: lag[0], max_window_s=0.05), Target(), Target()
    assert wakeups.window_s() == 0.05  # capped: a lagging loop never holds events longer than the cap
    wakeups.later(first)
    await asyncio.sleep(0.01)
    wakeups.later(second)
    wakeups.later(first)
    assert (first.woken, second.woken) == (0, 0)
    await asyncio.sleep(0.06)
    assert (first.woken, second.woken) == (1, 1)
    lag[0] = 0.02
    assert wakeups.window_s() == 0.02


async def test_close_wakes_what_is_pending() -> None:
    wakeups, target = Wakeups(lambda: 1.0), Target()
    wakeups.later(target)
    wakeups.close()
    assert target.woken == 1


def test_busy_meter_reads_the_loop_threads_share_of_the_last_interval() -> None:
    cpu, wall = [10.0], [100.0]
    meter = BusyMeter(interval_s=0.1, cpu_clock=lambda: cpu[0], wall_clock=lambda: wall[0])
    cpu[0], wall[0] = 10.18, 100.2
    assert meter.share() == pytest.approx(0.9)
    cpu[0], wall[0] = 10.2, 100.25  # within the interval: the last reading stands
    assert meter.share() == pytest.approx(0.9)
    cpu[0], wall[0] = 10.2, 102.2  # a quiet two seconds read low at once
    assert meter.share() == pytest.approx(0.01)


async def test_a_saturated_loop_holds_wakeups_before_it_lags_and_lets_go_only_well_below() -> None:
    share = [0.9]
    wakeups = Wakeups(lambda: 0.0, max_window_s=0.05, busy_share=lambda: share[0], busy_on=0.8, busy_off=0.5)
    assert wakeups.window_s() == 0.05  # no lag yet, but the loop is using 90 % of its core
    share[0] = 0.6  # holding lowered the share: still held, or it would flap back to 0.9
    assert wakeups.window_s() == 0.05
    share[0] = 0.4
    assert wakeups.window_s() == 0.0
    share[0] = 0.7  # not saturated: stays at once
    assert wakeups.window_s() == 0.0
    target = Target()
    share[0] = 0.95
    wakeups.later(target)
    await asyncio.sleep(0.01)
    assert target.woken == 0  # held for the window
    await asyncio.sleep(0.06)
    assert target.woken == 1
