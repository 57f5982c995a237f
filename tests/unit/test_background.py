"""stop_tasks ends every background task, also one whose first cancel was swallowed on the way."""

from __future__ import annotations

import asyncio
import logging

import pytest

from gima_server.background import stop_tasks


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
