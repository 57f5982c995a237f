"""The rate-limit backend contract, run against memory, a real redis-server and a real three-master Redis Cluster."""

from __future__ import annotations

import asyncio
from typing import AsyncIterator

import pytest
from redis.asyncio import Redis

from gima_server import redis_keys
from gima_server.limits.backends import MemoryBackend, RateLimitBackend, RedisBackend
from gima_server.limits.gcra import Limit

from ..conftest import redis_client

FAST = Limit("chat", rate=10, period_s=1, burst=3)  # one unit per 100 ms


@pytest.fixture(params=["memory", "redis", "redis-cluster"])
async def backend(request: pytest.FixtureRequest) -> AsyncIterator[RateLimitBackend]:
    if request.param == "memory":
        yield MemoryBackend()
        return
    client = redis_client(request)
    yield RedisBackend(client)
    await client.aclose()


async def test_burst_is_allowed_then_refused_until_refilled(backend: RateLimitBackend) -> None:
    decisions = [await backend.check("u1", FAST, 1) for _ in range(4)]
    assert [d.allowed for d in decisions] == [True, True, True, False]
    assert [d.remaining for d in decisions[:3]] == [2, 1, 0]
    assert 0.05 < decisions[3].retry_after_s <= 0.1001
    await asyncio.sleep(decisions[3].retry_after_s + 0.01)
    assert (await backend.check("u1", FAST, 1)).allowed


async def test_keys_and_limits_are_independent(backend: RateLimitBackend) -> None:
    for _ in range(3):
        await backend.check("a", FAST, 1)
    assert (await backend.check("b", FAST, 1)).allowed
    assert (await backend.check("a", Limit("default", 10, 1, 3), 1)).allowed


async def test_refunds_give_units_back(backend: RateLimitBackend) -> None:
    for _ in range(3):
        await backend.check("u", FAST, 1)
    await backend.adjust("u", FAST, -2)
    assert (await backend.check("u", FAST, 2)).allowed
    assert not (await backend.check("u", FAST, 1)).allowed


async def test_cost_counts(backend: RateLimitBackend) -> None:
    assert (await backend.check("u", FAST, 3)).allowed
    refused = await backend.check("u", FAST, 2)
    assert not refused.allowed and 0.15 < refused.retry_after_s <= 0.2001


async def test_redis_keys_expire_when_idle(redis_url: str) -> None:
    client = Redis.from_url(redis_url)
    try:
        backend = RedisBackend(client)
        slow = Limit("chat", rate=1, period_s=10, burst=5)
        await backend.check("idle", slow, 2)
        key = redis_keys.rate_limit("chat", "idle")
        assert key == "gima:rl:{chat:idle}"
        ttl_ms = await client.pttl(key)
        assert 19_000 < ttl_ms <= 20_001  # exactly until the bucket is full again
    finally:
        await client.aclose()
