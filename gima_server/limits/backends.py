"""Where bucket state lives: in this process (memory) or shared through Redis (one Lua call per check)."""

from __future__ import annotations

import math
import time
from importlib import resources
from typing import TYPE_CHECKING, Callable, Protocol

from .. import redis_keys
from ..ids import new_id
from ..observability import otel
from .gcra import Decision, Limit, adjust, check

if TYPE_CHECKING:
    from redis.asyncio import Redis


class RateLimitBackend(Protocol):
    async def check(self, key: str, limit: Limit, cost: float) -> Decision: ...

    async def adjust(self, key: str, limit: Limit, amount: float) -> None:
        """Charge (> 0, never refused) or refund (< 0) units, e.g. to settle a reply's real token count."""
        ...


class MemoryBackend:
    def __init__(self, clock: Callable[[], float] = time.monotonic, max_keys: int = 100_000) -> None:
        self._clock = clock
        self._max_keys = max_keys
        self._tats: dict[tuple[str, str], float] = {}  # bound: max_keys, past which full buckets are forgotten (_purge)

    def _purge(self, now: float) -> None:
        # Buckets whose time has passed are full again: forgetting them changes nothing.
        if len(self._tats) >= self._max_keys:
            self._tats = {k: tat for k, tat in self._tats.items() if tat > now}

    async def check(self, key: str, limit: Limit, cost: float) -> Decision:
        now = self._clock()
        self._purge(now)
        decision, new_tat = check(self._tats.get((limit.name, key)), now, limit, cost)
        if new_tat is not None:
            self._tats[(limit.name, key)] = new_tat
        return decision

    async def adjust(self, key: str, limit: Limit, amount: float) -> None:
        now = self._clock()
        self._tats[(limit.name, key)] = adjust(self._tats.get((limit.name, key)), now, limit, amount)


_SCRIPT = resources.files("gima_server").joinpath("lua/ratelimit.lua").read_text()
# How long a charge's answer is kept for a resend of the same call: the clients resend at once (one retry, no
# backoff: redis_client.connect), so seconds would do; a minute covers a slow failover.
CALL_RECORD_MS = 60_000


class RedisBackend:
    """GCRA in one Lua script on the Redis server's clock, so every process shares one bucket and one time."""

    def __init__(self, redis: Redis) -> None:
        self._script = redis.register_script(_SCRIPT)

    async def _call(self, key: str, limit: Limit, cost: float, mode: str) -> list[object]:
        args: list[float | str] = [limit.interval_s * 1000, limit.burst, cost, mode, CALL_RECORD_MS]
        keys = [redis_keys.rate_limit(limit.name, key), redis_keys.rate_limit_call(limit.name, key, new_id())]
        with otel.client_span("redis rate limit", {"db.system": "redis", "gima.limit": limit.name}):
            result: list[object] = await self._script(keys=keys, args=args)
        return result

    async def check(self, key: str, limit: Limit, cost: float) -> Decision:
        if cost > limit.burst:
            return Decision(False, 0, math.inf, 0.0, limit)
        allowed, remaining, retry_ms, reset_ms = await self._call(key, limit, cost, "check")
        return Decision(bool(allowed), int(_number(remaining)), _number(retry_ms) / 1000, _number(reset_ms) / 1000, limit)

    async def adjust(self, key: str, limit: Limit, amount: float) -> None:
        await self._call(key, limit, amount, "adjust")


def _number(value: object) -> float:
    return float(value.decode() if isinstance(value, bytes) else str(value))
