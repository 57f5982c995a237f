"""Subscribers are woken at once on an idle loop, and once per window (not per event) on a busy one."""

from __future__ import annotations

import asyncio

from gima_server.streams.wakeups import Wakeups


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
