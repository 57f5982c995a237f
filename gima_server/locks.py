"""Per-key locks with fencing tokens: local (one process) or Redis (SET NX PX + token, Lua release/extend).

Every acquisition returns a fencing token that only grows, per lock name. Writers hand it to the store,
which refuses a write older than the newest it has seen, so a producer that lost its lock (paused, cut
off) can never overwrite the work of the one that took over.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import secrets
import time
from dataclasses import dataclass, replace
from importlib import resources
from typing import TYPE_CHECKING, Callable, Protocol

from . import redis_keys
from .backing import SHARED_FAILURES, UNANSWERED
from .observability import otel

if TYPE_CHECKING:
    from redis.asyncio import Redis

log = logging.getLogger("gima.locks")


@dataclass(frozen=True, slots=True)
class Lease:
    name: str
    token: str
    fence: int
    local: bool = False  # taken from the in-process fall-back, not the shared backend
    # A local lease taken because Redis did not answer an acquisition in time: Redis may still have run it and hold
    # the lock under this token, which is released with the lease (the lock is then not left for its whole life).
    in_doubt: str | None = None


class Locks(Protocol):
    async def try_acquire(self, name: str, ttl_s: float) -> Lease | None: ...

    async def extend(self, lease: Lease, ttl_s: float) -> bool:
        """Push the expiry out; False when another holder has taken the lock. A lock that expired with no one
        taking it (a backend failing over, a pause) is taken again for the same holder: an outage is no takeover."""
        ...

    async def release(self, lease: Lease) -> bool: ...


async def acquire(locks: Locks, name: str, ttl_s: float, wait_s: float, poll_s: float = 0.02) -> Lease | None:
    """Try until wait_s has passed; None if the lock stayed taken."""
    deadline = time.monotonic() + wait_s
    while True:
        lease = await locks.try_acquire(name, ttl_s)
        if lease is not None or time.monotonic() >= deadline:
            return lease
        await asyncio.sleep(poll_s)


class LocalLocks:
    def __init__(self, clock: Callable[[], float] = time.monotonic, max_held: int = 100_000) -> None:
        self._clock = clock
        # Bound: a lease leaves at its release, or once expired when next asked for; past max_held (leases
        # abandoned without a release) every expired one is dropped at the next acquire.
        self._held: dict[str, tuple[str, float]] = {}
        self._max_held = max_held
        # One fence for every name (a map per name grew with every chat and session ever locked): increasing
        # for the process, so increasing for each name too.
        self._last_fence = 0
        self._tokens = itertools.count(1)  # unique within the process, which is all a local lease needs

    def _holder(self, name: str) -> str | None:
        held = self._held.get(name)
        if held is None or held[1] <= self._clock():
            self._held.pop(name, None)
            return None
        return held[0]

    async def try_acquire(self, name: str, ttl_s: float) -> Lease | None:
        if self._holder(name) is not None:
            return None
        token = f"local-{next(self._tokens)}"  # profile: a random token per lock was ~2 % of starting a reply
        if len(self._held) >= self._max_held:
            now = self._clock()
            self._held = {n: held for n, held in self._held.items() if held[1] > now}
        self._held[name] = (token, self._clock() + ttl_s)
        # Microseconds of wall time, like the Redis script, so both kinds of token order with each other.
        self._last_fence = max(self._last_fence + 1, time.time_ns() // 1000)
        return Lease(name, token, self._last_fence, local=True)

    @property
    def held_count(self) -> int:
        return len(self._held)

    async def extend(self, lease: Lease, ttl_s: float) -> bool:
        if self._holder(lease.name) not in (lease.token, None):
            return False
        self._held[lease.name] = (lease.token, self._clock() + ttl_s)
        return True

    async def release(self, lease: Lease) -> bool:
        if self._holder(lease.name) != lease.token:
            return False
        del self._held[lease.name]
        return True


def _script(name: str) -> str:
    return resources.files("gima_server").joinpath(f"lua/{name}").read_text()


class RedisLocks:
    def __init__(self, redis: Redis) -> None:
        self._acquire = redis.register_script(_script("lock_acquire.lua"))
        self._extend = redis.register_script(_script("lock_extend.lua"))
        self._release = redis.register_script(_script("lock_release.lua"))

    async def try_acquire(self, name: str, ttl_s: float, token: str | None = None) -> Lease | None:
        token = token or secrets.token_hex(16)
        keys = [redis_keys.lock(name), redis_keys.fence(name)]
        with otel.client_span("redis lock", {"db.system": "redis"}):
            fence = await self._acquire(keys=keys, args=[token, int(ttl_s * 1000)])
        return Lease(name, token, int(fence)) if fence is not None else None

    async def extend(self, lease: Lease, ttl_s: float) -> bool:
        return bool(await self._extend(keys=[redis_keys.lock(lease.name)], args=[lease.token, int(ttl_s * 1000)]))

    async def release(self, lease: Lease) -> bool:
        return bool(await self._release(keys=[redis_keys.lock(lease.name)], args=[lease.token]))




class FallbackLocks:
    """Shared locks while Redis answers; this process's own locks while it does not (logged once per outage).

    "Does not answer" is the client's own timeouts (connect, send, read: GIMA_REDIS_TIMEOUT_S) or its errors; waiting
    for a free pooled connection is not, because that is this process being busy (bench.paced with Redis: ~80 false
    outages a run when the whole call had one deadline), and a lease taken locally while Redis is up is one another
    process cannot see. The pool's own wait is bounded (redis_client.py) and fails as an outage past it."""

    def __init__(self, shared: RedisLocks, local: LocalLocks) -> None:
        self._shared = shared
        self._local = local
        self._down = False

    async def try_acquire(self, name: str, ttl_s: float) -> Lease | None:
        token = secrets.token_hex(16)
        try:
            lease = await self._shared.try_acquire(name, ttl_s, token)
        except SHARED_FAILURES as exc:
            if not self._down:
                self._down = True
                log.warning("lock backend failed (%s); locking within this process only", type(exc).__name__)
            local = await self._local.try_acquire(name, ttl_s)
            if local is not None and isinstance(exc, UNANSWERED):
                local = replace(local, in_doubt=token)
            return local
        if self._down:
            self._down = False
            log.warning("lock backend answers again; locks are shared again")
        return lease

    async def extend(self, lease: Lease, ttl_s: float) -> bool:
        if lease.local:
            return await self._local.extend(lease, ttl_s)
        return await self._shared.extend(lease, ttl_s)

    async def release(self, lease: Lease) -> bool:
        """Raises when Redis cannot be reached for a release it needs (the caller retries later, ownership.py)."""
        if not lease.local:
            return await self._shared.release(lease)
        released = await self._local.release(lease)
        if lease.in_doubt is not None:  # by its token: a lock someone else holds now is never touched
            await self._shared.release(Lease(lease.name, lease.in_doubt, 0))
        return released
