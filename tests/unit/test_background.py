"""stop_tasks ends every background task, also one whose first cancel was swallowed on the way; kept() is a shield
that hands its outcome over a loop turn sooner."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from gima_server.background import kept, stop_tasks


async def _swallows_first_cancel(ended: list[str]) -> None:
    """What redis-py does on Python 3.11 when a cancel lands as asyncio.wait_for's inner task completes."""
    try:
        await asyncio.sleep(3600)
    except asyncio.CancelledError:
        pass  # the loop goes on as if the call had returned
    try:
        await asyncio.sleep(3600)
    finally:
        ended.append("second cancel")


async def test_a_task_that_swallowed_a_cancel_is_cancelled_again() -> None:
    ended: list[str] = []
    task = asyncio.create_task(_swallows_first_cancel(ended))
    await asyncio.sleep(0)
    await asyncio.wait_for(stop_tasks([task], patience_s=0.05), 2)
    assert task.done() and ended == ["second cancel"]


async def test_a_task_that_failed_is_logged_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    async def fails() -> None:
        raise RuntimeError("boom")

    task = asyncio.create_task(fails())
    await asyncio.sleep(0)
    with caplog.at_level(logging.ERROR, logger="gima_server.background"):
        await stop_tasks([task, asyncio.create_task(asyncio.sleep(3600))])
    assert any("failed" in r.getMessage() and r.exc_info for r in caplog.records)


async def _turns_until_done(wrap: Any) -> int:
    """Loop turns from the moment the wrapped work's awaited future is set until its caller has the result."""
    gate: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    async def work() -> int:
        return await gate

    async def call() -> int:
        return int(await wrap(work()))

    caller = asyncio.ensure_future(call())  # a task awaiting the wrapper, as the reply's is
    for _ in range(3):
        await asyncio.sleep(0)
    gate.set_result(42)
    turns = 0
    while not caller.done():
        await asyncio.sleep(0)
        turns += 1
    assert caller.result() == 42
    return turns


async def test_kept_hands_the_outcome_over_a_turn_sooner_than_shield() -> None:
    assert await _turns_until_done(kept) == await _turns_until_done(asyncio.shield) - 1


async def test_kept_work_runs_on_when_its_caller_is_cancelled() -> None:
    gate: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    finished: list[str] = []

    async def write() -> str:
        await gate
        finished.append("written")
        return "written"

    caller = asyncio.ensure_future(kept(write()))
    await asyncio.sleep(0)
    caller.cancel()
    with pytest.raises(asyncio.CancelledError):
        await caller
    gate.set_result(None)
    for _ in range(5):
        await asyncio.sleep(0)
    assert finished == ["written"]


async def test_kept_passes_on_the_works_error() -> None:
    async def refused() -> None:
        raise LookupError("no such reply")

    with pytest.raises(LookupError):
        await kept(refused())
