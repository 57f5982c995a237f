"""The idempotency record contract, run against memory and a real redis-server."""

from __future__ import annotations

import asyncio
from typing import AsyncIterator

import pytest
from redis.asyncio import Redis

from gima_server import redis_keys
from gima_server.idempotency import IdempotencyRecord, IdempotencyStore, MemoryIdempotencyStore, RedisIdempotencyStore

from ..conftest import redis_client


@pytest.fixture(params=["memory", "redis", "redis-cluster"])
async def records(request: pytest.FixtureRequest) -> AsyncIterator[IdempotencyStore]:
    if request.param == "memory":
        yield MemoryIdempotencyStore(ttl_s=86_400, lease_s=0.3)
        return
    client = redis_client(request)
    yield RedisIdempotencyStore(client, ttl_s=86_400, lease_s=0.3)
    await client.aclose()


async def test_fifty_concurrent_claims_have_exactly_one_winner(records: IdempotencyStore) -> None:
    results = await asyncio.gather(*(records.claim("u", "k", IdempotencyRecord("fp", f"m{i}")) for i in range(50)))
    winners = [i for i, r in enumerate(results) if r is None]
    assert len(winners) == 1
    assert {r.message_id for r in results if r is not None} == {f"m{winners[0]}"}


async def test_records_are_per_user_and_key(records: IdempotencyStore) -> None:
    assert await records.claim("u", "k", IdempotencyRecord("fp1", "m1")) is None
    assert await records.claim("v", "k", IdempotencyRecord("fp2", "m2")) is None
    assert await records.claim("u", "k2", IdempotencyRecord("fp3", "m3")) is None
    assert await records.get("u", "k") == IdempotencyRecord("fp1", "m1")
    assert await records.get("nobody", "k") is None


async def test_an_unfinished_claim_expires_after_its_lease(records: IdempotencyStore) -> None:
    assert await records.claim("u", "k", IdempotencyRecord("fp", "m1")) is None
    await asyncio.sleep(0.4)  # the process that claimed it died: the key is free again
    assert await records.claim("u", "k", IdempotencyRecord("fp", "m2")) is None


async def test_a_completed_claim_is_kept(records: IdempotencyStore) -> None:
    assert await records.claim("u", "k", IdempotencyRecord("fp", "m1")) is None
    await records.complete("u", "k")
    await asyncio.sleep(0.4)
    assert await records.get("u", "k") == IdempotencyRecord("fp", "m1")


async def test_release_frees_the_key(records: IdempotencyStore) -> None:
    await records.claim("u", "k", IdempotencyRecord("fp", "m1"))
    await records.release("u", "k")
    assert await records.get("u", "k") is None


async def test_redis_record_ttl(redis_url: str) -> None:
    client = Redis.from_url(redis_url)
    try:
        store = RedisIdempotencyStore(client, ttl_s=86_400, lease_s=600)
        await store.claim("u", "k", IdempotencyRecord("fp", "m1"))
        key = redis_keys.idempotency("u", "k")
        assert 590_000 < await client.pttl(key) <= 600_000
        await store.complete("u", "k")
        assert 86_390_000 < await client.pttl(key) <= 86_400_000
    finally:
        await client.aclose()


async def test_a_completed_json_request_keeps_its_response(records: IdempotencyStore) -> None:
    assert await records.claim("u", "k", IdempotencyRecord("fp", "")) is None
    claimed = await records.get("u", "k")
    assert claimed is not None and not claimed.completed
    await records.complete("u", "k", 201, '{"chat": {"id": "c1"}}')
    await asyncio.sleep(0.4)  # past the lease: completion keeps it
    done = await records.get("u", "k")
    assert done == IdempotencyRecord("fp", "", 201, '{"chat": {"id": "c1"}}') and done.completed
