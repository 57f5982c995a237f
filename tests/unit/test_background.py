"""stop_tasks ends every background task, also one whose first cancel was swallowed on the way; kept() is a shield
that hands its outcome over a loop turn sooner; started_task() runs a task's first step as it makes it."""

from __future__ import annotations

import asyncio
import contextvars
import logging
from typing import Any

import pytest

from gima_server.background import kept, started_task, stop_tasks


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


_MARK: contextvars.ContextVar[str] = contextvars.ContextVar("mark", default="caller's")


async def test_a_started_tasks_first_step_runs_before_it_is_returned_and_the_rest_as_a_task() -> None:
    steps: list[str] = []
    gate: asyncio.Future[str] = asyncio.get_running_loop().create_future()

    async def work() -> str:
        steps.append("first")
        value = await gate
        steps.append("rest")
        return value

    task = started_task(asyncio.get_running_loop(), work(), name="w")
    assert steps == ["first"] and task.get_name() == "w"  # created_task's would still be []
    gate.set_result("done")
    assert await task == "done" and steps == ["first", "rest"]


async def test_a_started_tasks_first_step_sees_its_own_task_and_context() -> None:
    caller = asyncio.current_task()
    seen: list[object] = []

    async def work() -> None:
        seen.append(asyncio.current_task())
        _MARK.set("task's")
        await asyncio.sleep(0)
        seen.append(_MARK.get())

    task = started_task(asyncio.get_running_loop(), work())
    assert seen == [task]
    assert asyncio.current_task() is caller and _MARK.get() == "caller's"  # restored, and nothing leaked
    await task
    assert seen == [task, "task's"]


async def test_a_timeout_entered_in_the_first_step_ends_the_started_task_not_its_caller() -> None:
    async def work() -> None:
        async with asyncio.timeout(0.01):
            await asyncio.sleep(10)

    task = started_task(asyncio.get_running_loop(), work())
    with pytest.raises(TimeoutError):
        await task
    await asyncio.sleep(0.02)  # the caller runs on, never cancelled
    assert asyncio.current_task() is not None and not asyncio.current_task().cancelling()  # type: ignore[union-attr]


async def test_a_cancel_before_the_tasks_first_turn_lands_where_the_first_step_waits() -> None:
    gate: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    ended: list[str] = []

    async def work() -> None:
        try:
            await gate
        except asyncio.CancelledError:
            ended.append("cancelled where it waited")
            raise

    task = started_task(asyncio.get_running_loop(), work())
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert ended == ["cancelled where it waited"] and gate.cancelled()


async def test_a_first_step_that_ends_the_work_gives_its_outcome_to_the_task() -> None:
    async def returns() -> int:
        return 7

    async def raises() -> None:
        raise LookupError("no such reply")

    loop = asyncio.get_running_loop()
    assert await started_task(loop, returns()) == 7
    with pytest.raises(LookupError):
        await started_task(loop, raises())


async def test_a_started_task_goes_on_in_its_first_turn_when_its_wait_is_already_over() -> None:
    """A timer that fires as the next turn begins: the task resumes in that turn (3.12's eager task would), not a
    turn later."""
    gate: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    steps: list[str] = []

    async def work() -> None:
        await gate
        steps.append("went on")

    task = started_task(asyncio.get_running_loop(), work())
    gate.set_result(None)  # before the task's first turn
    await asyncio.sleep(0)  # one turn
    assert steps == ["went on"] and task.done()
