"""Checkpoints of a reply's partial text, written in the background so the reply never waits on the store."""

from __future__ import annotations

import asyncio
import logging
from typing import Callable

from ..store.base import Store

log = logging.getLogger("gima.checkpoint")


class Checkpointer:
    """At most one write in flight: while one runs, later checkpoints are skipped (the next one, or the final
    write, carries newer text), so a slow store costs fewer writes instead of slowing the reply."""

    def __init__(self, store: Store, message_id: str) -> None:
        self._store = store
        self._message_id = message_id
        self._task: asyncio.Task[bool] | None = None
        self.stale = False  # the store refused a write: a newer producer owns this reply

    def offer(self, text: Callable[[], str], fence: int) -> None:
        if self._task is not None:
            if not self._task.done():
                return
            self._collect(self._task)
        if not self.stale:
            self._task = asyncio.create_task(self._store.checkpoint_reply(self._message_id, text(), fence))

    def _collect(self, task: asyncio.Task[bool]) -> None:
        self._task = None
        if task.cancelled():
            return
        if task.exception() is not None:
            log.warning("checkpoint of %s failed (%s); the final write will carry the text",
                        self._message_id, type(task.exception()).__name__)
        elif task.result() is False:
            self.stale = True

    async def settle(self) -> None:
        """Wait for the write in flight (it must land before the final write, and it is ours to await)."""
        task = self._task
        if task is None:
            return
        await asyncio.wait({task})
        self._collect(task)
