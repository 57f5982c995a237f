"""Stopping background tasks for certain, even when a library swallowed the first cancel."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from typing import Any

log = logging.getLogger(__name__)


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
