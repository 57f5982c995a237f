"""Every in-process map the server keeps has a bound and an eviction rule: each is driven past a small bound here
and must stay within it (memory that stays flat under sustained load, issue 29)."""

from __future__ import annotations

import asyncio
import time
from typing import Any, Sequence

from gima_server.auth.sessions import SessionCache
from gima_server.idempotency import IdempotencyRecord, MemoryIdempotencyStore
from gima_server.limits.backends import MemoryBackend
from gima_server.limits.gcra import Limit
from gima_server.locks import LocalLocks
from gima_server.store.base import User
from gima_server.streams.events import Event, make_event
from gima_server.streams.reply import Pushable
from gima_server.streams.ws import _Socket

from ..fakes import FakeClock


async def test_local_locks_drop_abandoned_leases_at_their_bound_and_keep_no_map_per_name() -> None:
    clock = FakeClock()
    locks = LocalLocks(clock, max_held=10)
    for i in range(10):
        assert await locks.try_acquire(f"chat:{i}", 5) is not None  # never released: abandoned
    clock.now += 6
    assert await locks.try_acquire("chat:new", 5) is not None
    assert locks.held_count == 1  # the expired ten went at the bound
    fences = []
    for i in range(1000):  # a lock per chat, each released: nothing stays behind per name
        lease = await locks.try_acquire(f"chat:{i}", 5)
        assert lease is not None
        fences.append(lease.fence)
        assert await locks.release(lease)
    assert locks.held_count == 1 and not hasattr(locks, "_fences")
    again = await locks.try_acquire("chat:0", 5)
    assert again is not None and again.fence > max(fences) and fences == sorted(set(fences))


async def test_rate_limit_buckets_forget_full_buckets_at_their_bound() -> None:
    clock = FakeClock()
    backend = MemoryBackend(clock, max_keys=50)
    limit = Limit("chat", 1.0, 1.0, 5)
    for i in range(50):
        await backend.check(f"user{i}", limit, 1)
    clock.now += 10  # every bucket is full again
    await backend.check("one more", limit, 1)
    assert len(backend._tats) == 1


async def test_idempotency_records_keep_the_newest_at_their_bound() -> None:
    store = MemoryIdempotencyStore(ttl_s=3600, max_records=20, clock=FakeClock())
    for i in range(100):
        await store.claim("u", f"key{i}", IdempotencyRecord("fp", f"m{i}"))
    assert len(store._records) <= 21
    assert await store.get("u", "key99") is not None and await store.get("u", "key0") is None


class _FinishedLog:
    """A reply that has ended: what a WebSocket follows."""

    finished = True

    def __init__(self, events: Sequence[Event]) -> None:
        self.events = list(events)

    async def wait_beyond(self, cursor: int) -> None:
        return None

    def subscribe(self, subscriber: Pushable) -> None: ...

    def unsubscribe(self, subscriber: Pushable) -> None: ...

    def close(self) -> None: ...


class _Peer:
    def __init__(self) -> None:
        self.sent: list[str] = []

    async def send_str(self, text: str) -> None:
        self.sent.append(text)


async def test_a_websocket_keeps_no_finished_follow() -> None:
    peer = _Peer()
    socket = _Socket(request=Any, principal=Any, ws=peer)  # type: ignore[arg-type]
    for i in range(50):  # a long-lived socket: one message after another
        socket.start_following(f"m{i}", _FinishedLog([make_event(1, "meta", {}), make_event(2, "done", {})]), 0)
        await asyncio.sleep(0)
        await asyncio.sleep(0)
    assert len(peer.sent) == 100
    assert socket.followers == {}


def test_the_sign_in_cache_stays_within_its_bound() -> None:
    cache = SessionCache(ttl_s=60, max_entries=10)
    user = User("u1", "a@example.com", "a", "hash", ("user",), 0.0)
    for i in range(25):
        cache.put(f"session{i}", user, time.time() + 3600)
        assert len(cache._entries) <= 10
    assert cache.get("session24") is user  # the newest is kept
