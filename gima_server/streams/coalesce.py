"""Double-send coalescing across processes: the first of identical sends within the window claims it in Redis."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from .. import redis_keys
from ..backing import SHARED_FAILURES

if TYPE_CHECKING:
    from redis.asyncio import Redis

log = logging.getLogger("gima.coalesce")


class RedisCoalescer:
    def __init__(self, redis: Redis, window_s: float) -> None:
        self._redis = redis
        self._window_ms = max(1, int(window_s * 1000))

    async def claim(self, session_id: str, content_key: str, message_id: str) -> str:
        """The message id that answers this send: ours if we are first, else the first one's."""
        if self._window_ms <= 1:
            return message_id
        try:
            # SET NX GET (Redis 7): one round trip that either claims or tells who claimed.
            earlier = await self._redis.set(
                redis_keys.coalesce(session_id, content_key), message_id, nx=True, px=self._window_ms, get=True
            )
        except SHARED_FAILURES as exc:  # coalescing falls back to this process only
            log.debug("coalescing claim failed (%s)", type(exc).__name__)
            return message_id
        return message_id if earlier is None else str(earlier.decode() if isinstance(earlier, bytes) else earlier)
