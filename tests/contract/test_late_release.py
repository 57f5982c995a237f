"""A lease whose release failed is released again once Redis answers (found by bench.paced with Redis on one busy
core: releases timed out, and each such session's next reply would have waited out the whole lease, stream_busy).
Against a real redis-server; the release is lost on the way by a relay that swallows it (tests/redis_link.py: a
SIGSTOP'd server sometimes ran the command it had received once continued, and the test then depended on timing)."""

from __future__ import annotations

import asyncio
from typing import AsyncIterator

import pytest
from redis.asyncio import Redis

from gima_server.locks import FallbackLocks, LocalLocks, RedisLocks
from gima_server.streams.ownership import Busy, LocalCancelBus, Ownership, OwnershipSettings

from ..conftest import MakeClient, sign_up
from ..redis_link import RedisLink
from ..sse import parse_sse, read_until

TIMEOUT_S = 0.2


@pytest.fixture
async def redis(redis_link: RedisLink) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_link.url, socket_timeout=TIMEOUT_S)
    yield client
    await client.aclose()


def _ownership(redis: Redis, lease_s: float = 30.0) -> Ownership:
    locks = FallbackLocks(RedisLocks(redis), LocalLocks())
    return Ownership(locks, LocalCancelBus(), OwnershipSettings(lease_s=lease_s, takeover_wait_s=0.3))


async def _release_lost(link: RedisLink, ownership: Ownership, lease: object) -> None:
    link.drop_requests = True
    try:
        await ownership.give_back(lease)  # type: ignore[arg-type]
    finally:
        link.drop_requests = False


async def test_a_failed_release_is_retried_and_the_session_is_free_again(
        redis_link: RedisLink, redis: Redis) -> None:
    ownership = _ownership(redis)
    lease = await ownership.take_session("s1", "m1")
    await _release_lost(redis_link, ownership, lease)
    assert ownership.late_releases == 1
    with pytest.raises(Busy):  # still held in Redis: the failed release did not land
        await ownership.take_session("s1", "m2")
    await ownership.release_late()
    assert ownership.late_releases == 0
    assert (await ownership.take_session("s1", "m3")).token != lease.token  # free at once, not after 30 s


async def test_a_late_release_never_frees_the_next_holder(redis_link: RedisLink, redis: Redis) -> None:
    ownership = _ownership(redis, lease_s=0.6)
    lease = await ownership.take_session("s2", "m1")
    await _release_lost(redis_link, ownership, lease)
    await asyncio.sleep(0.7)  # the unreleased lease expires; someone else takes the session
    successor = await _ownership(redis).take_session("s2", "m2")
    await ownership.release_late()  # forgotten (expired), and even if sent it names the old token
    assert ownership.late_releases == 0
    with pytest.raises(Busy):
        await _ownership(redis).take_session("s2", "m3")
    assert await RedisLocks(redis).release(successor)


async def test_the_background_job_releases_without_being_asked(redis_link: RedisLink, redis: Redis) -> None:
    ownership = _ownership(redis)
    lease = await ownership.take_session("s3", "m1")
    await _release_lost(redis_link, ownership, lease)
    job = asyncio.create_task(ownership.release_late_forever(every_s=0.05))
    try:
        async with asyncio.timeout(5):
            while ownership.late_releases:  # noqa: ASYNC110 - polling what the job changes, as a reader would
                await asyncio.sleep(0.02)
    finally:
        job.cancel()
        await asyncio.gather(job, return_exceptions=True)
    await ownership.take_session("s3", "m2")


async def test_a_session_whose_release_failed_can_chat_again_soon(
        make_client: MakeClient, redis_url: str, caplog: pytest.LogCaptureFixture) -> None:
    """Through the app: a reply ends while Redis holds every write (CLIENT PAUSE WRITE); its lease's release times
    out, and the connection it waits on is killed, so that release is lost for good, as one is when it never left
    a full connection pool. Once Redis answers again, the same session's next message streams, where it would
    have met stream_busy until the lease ran out (30 s)."""
    client = await make_client(redis_url=redis_url, redis_timeout_s=TIMEOUT_S, rate_limits="off",
                               demo_tokens_per_s=20, demo_reply_words=40)
    alice = await sign_up(client, "alice@example.com")
    resp = await client.post("/api/chat/stream", json={"content": "a slow one"}, headers=alice.headers)
    seen = await read_until(resp, lambda ev: sum(e.name == "delta" for e in ev) >= 2)
    admin = Redis.from_url(redis_url)
    try:
        await admin.execute_command("CLIENT", "PAUSE", "10000", "WRITE")
        try:
            cancel = await client.post(f"/api/chat/streams/{seen[0].data['messageId']}/cancel", headers=alice.headers)
            assert cancel.status == 202
            rest, _ = parse_sse(await resp.read())
            assert rest[-1].name == "error" and rest[-1].data["code"] == "cancelled"
            async with asyncio.timeout(10):  # the reply lets go of its session: that release times out
                while not any(r.getMessage().startswith("could not release session:")  # noqa: ASYNC110 - a log line
                              for r in caplog.records):
                    await asyncio.sleep(0.05)
            await admin.execute_command("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes")  # its command is dropped
        finally:
            await admin.execute_command("CLIENT", "UNPAUSE")
        assert await admin.keys("gima:lock:{session:*}")  # the lease is still there: the release was lost
        await asyncio.sleep(1.5)  # the late release runs every second
        assert not await admin.keys("gima:lock:{session:*}")
    finally:
        await admin.aclose()
    again, _ = await alice.stream("and now a quick one", chatId=seen[0].data["chatId"])
    assert again[-1].name == "done", again[-1].data
