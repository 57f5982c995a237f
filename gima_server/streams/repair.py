"""Replies left `streaming` by a process that died: marked `error` (reason interrupted) with their partial text.

Without Redis, one process owns its data dir, so at start-up every reply still marked streaming is an orphan of
its previous run. With Redis, a reply is an orphan once its owner lease has lapsed; the sweep runs at start-up
and then periodically, for replies that no reader was following when their process died.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Callable

from ..backing import SHARED_FAILURES
from ..store.base import Store
from .follower import LogFollower

log = logging.getLogger("gima.repair")
_BATCH = 500


class OrphanRepair:
    def __init__(
        self,
        store: Store,
        follower: LogFollower | None,
        is_local: Callable[[str], bool],
        interrupted_id: int,
        min_age_s: float,
    ) -> None:
        self._store = store
        self._follower = follower
        self._is_local = is_local
        self._interrupted_id = interrupted_id
        self._min_age_s = min_age_s  # younger replies may not have published their owner lease yet

    async def run_once(self) -> int:
        """Repair what can be judged now; return how many replies were marked interrupted."""
        repaired = 0
        cutoff = time.time() - self._min_age_s
        for message in await self._store.list_streaming_replies(_BATCH):
            if self._is_local(message.id) or (self._follower is not None and message.created_at > cutoff):
                continue
            if self._follower is None:
                repaired += await self._store.interrupt_reply(message.id, None, self._interrupted_id)
                continue
            closed = await self._follower.close_if_dead(message.id, "-")
            if closed is None:  # Redis knows nothing of it (expired, or Redis lost its data): the store decides
                repaired += await self._store.interrupt_reply(message.id, None, self._interrupted_id)
            elif closed:
                repaired += 1  # close_if_dead stored it
        if repaired:
            log.warning("marked %d %s of stopped processes as interrupted", repaired, "reply" if repaired == 1 else "replies")
        return repaired

    async def run_forever(self, interval_s: float, first_after_s: float) -> None:
        """The first sweep comes soon after start-up (a process restarted after a crash finds its own replies'
        leases still running at start, and they lapse within the owner timeout), then every interval_s."""
        delay = first_after_s
        while True:
            await asyncio.sleep(delay)
            delay = interval_s
            try:
                await self.run_once()
            except SHARED_FAILURES as exc:
                log.info("orphan repair skipped (%s)", type(exc).__name__)
            except Exception:
                log.exception("orphan repair failed")
