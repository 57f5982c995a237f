"""The lock contract (exclusion, expiry, token-checked extend/release, growing fencing tokens), memory and Redis."""

from __future__ import annotations

import asyncio
from typing import AsyncIterator

import pytest

from gima_server.locks import LocalLocks, Locks, RedisLocks, acquire

from ..conftest import redis_client
from ..redelivering import Redelivering


@pytest.fixture(params=["local", "redis", "redis-cluster"])
async def locks(request: pytest.FixtureRequest) -> AsyncIterator[Locks]:
    if request.param == "local":
        yield LocalLocks()
        return
    client = redis_client(request)
    yield RedisLocks(client)
    await client.aclose()


async def test_one_holder_at_a_time_and_fences_grow(locks: Locks) -> None:
    first = await locks.try_acquire("session:s", 5)
    assert first is not None
    assert await locks.try_acquire("session:s", 5) is None
    assert await locks.try_acquire("session:other", 5) is not None
    assert await locks.release(first)
    second = await locks.try_acquire("session:s", 5)
    assert second is not None and second.fence > first.fence


async def test_concurrent_acquire_has_one_winner(locks: Locks) -> None:
    leases = await asyncio.gather(*(locks.try_acquire("hot", 5) for _ in range(50)))
    assert sum(lease is not None for lease in leases) == 1


async def test_an_expired_lease_cannot_be_extended_or_released(locks: Locks) -> None:
    stale = await locks.try_acquire("k", 0.1)
    assert stale is not None and await locks.extend(stale, 0.1)
    await asyncio.sleep(0.25)
    newer = await locks.try_acquire("k", 5)
    assert newer is not None and newer.fence > stale.fence
    assert not await locks.extend(stale, 5)
    assert not await locks.release(stale)
    assert await locks.try_acquire("k", 5) is None  # the newer holder still has it


async def test_a_lease_that_expired_with_no_one_taking_it_is_taken_again_by_its_extend(locks: Locks) -> None:
    lease = await locks.try_acquire("lapsed", 0.1)
    assert lease is not None
    await asyncio.sleep(0.25)  # expired (a backend failover, a pause), and nobody took it meanwhile
    assert await locks.extend(lease, 5)
    assert await locks.try_acquire("lapsed", 5) is None  # it is held again, by the same lease
    assert await locks.release(lease)


async def test_acquire_waits_for_release(locks: Locks) -> None:
    held = await locks.try_acquire("w", 5)
    assert held is not None

    async def release_soon() -> None:
        await asyncio.sleep(0.1)
        await locks.release(held)

    releaser = asyncio.create_task(release_soon())
    lease = await acquire(locks, "w", 5, wait_s=2)
    await releaser
    assert lease is not None and lease.fence > held.fence
    assert await acquire(locks, "w", 5, wait_s=0.1) is None


@pytest.mark.parametrize("backing", ["redis", "redis-cluster"])
async def test_an_acquisition_delivered_twice_still_holds_the_lock(request: pytest.FixtureRequest, backing: str) -> None:
    client = redis_client(request, backing)
    try:
        locks, redelivered = RedisLocks(client), RedisLocks(Redelivering(client))
        lease = await redelivered.try_acquire("twice", 5)
        assert lease is not None  # it is the holder, not told "held by someone else" by its own first delivery
        assert await locks.try_acquire("twice", 5) is None
        assert await locks.extend(lease, 5) and await locks.release(lease)
        newer = await locks.try_acquire("twice", 5)
        assert newer is not None and newer.fence > lease.fence
    finally:
        await client.aclose()
