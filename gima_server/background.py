"""Stopping background tasks for certain, even when a library swallowed the first cancel."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine, Iterable
from typing import Any, TypeVar

log = logging.getLogger(__name__)
T = TypeVar("T")


async def stop_tasks(tasks: Iterable[asyncio.Future[Any]], patience_s: float = 0.5) -> None:
    """Cancel the tasks and wait until every one has ended, cancelling again any still running after patience_s.

    On Python 3.11 `asyncio.wait_for` returns the inner result and drops a cancel that lands as the inner
    task finishes (CPython gh-86296, fixed in 3.12); redis-py sends every command through it, so a loop
    cancelled at that instant carries on as if nothing happened, and a single cancel-then-await hangs.
    """
    tasks = list(tasks)
    pending = {task for task in tasks if not task.done()}
    rounds = 0
    while pending:
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=patience_s)
        rounds += 1
        if pending and rounds % 20 == 0:
            log.warning("%d background tasks still running after %d cancels", len(pending), rounds)
    for task in tasks:
        if task.done() and not task.cancelled() and task.exception() is not None:
            log.error("background task %r failed", task, exc_info=task.exception())


_KEPT: set[asyncio.Task[None]] = set()  # the loop holds tasks weakly: these run on after their caller has gone


async def kept(work: Coroutine[Any, Any, T]) -> T:
    """asyncio.shield(work), handing the outcome over a loop turn sooner: a cancel of the caller does not stop the
    work (it runs in a task of its own), and the task sets the caller's future as its last step, where shield's
    future is set from the task's completion callback, a turn later (a turn of a busy loop is a quarter of a second
    or more, paid at every reply's end for its final write). Hand-written: asyncio has no such shield."""
    loop = asyncio.get_running_loop()
    outcome: asyncio.Future[T] = loop.create_future()

    async def run() -> None:
        try:
            result = await work
        except BaseException as exc:  # the caller's to see, or nobody's if it has gone (as with shield)
            if not outcome.done():
                outcome.cancel() if isinstance(exc, asyncio.CancelledError) else outcome.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
        else:
            if not outcome.done():
                outcome.set_result(result)

    task = loop.create_task(run())
    _KEPT.add(task)
    task.add_done_callback(_KEPT.discard)
    return await outcome
