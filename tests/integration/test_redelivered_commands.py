"""A command Redis ran whose answer the client lost, sent again (redis-py's cluster client retries a timed-out
command; any client may resend after a dropped connection): what the server keeps in Redis must come out as if it
had been sent once. Each case runs against a real redis-server through a client that sends each script and
pipeline twice (tests/redelivering.py); the others live beside the code they test (the locks, the reply log)."""

from __future__ import annotations

from redis.asyncio import Redis

from gima_server import redis_keys
from gima_server.agents.hook_inbox import HookInbox
from gima_server.limits.backends import RedisBackend
from gima_server.limits.gcra import Limit

from ..redelivering import Redelivering


async def test_a_callback_batch_delivered_twice_reaches_the_reply_once(redis_url: str) -> None:
    direct = Redis.from_url(redis_url)
    inbox, redelivering = HookInbox(), Redis.from_url(redis_url)
    inbox.attach(Redelivering(redelivering))
    try:
        assert await inbox.deliver("reply-twice", "delivery-1", [{"type": "delta", "text": "hello"}])
        entries = await direct.xrange(redis_keys.hook_inbox("reply-twice"))
        assert len(entries) == 1
        # The backend's own retry of that delivery is still told it is a duplicate, and adds nothing.
        assert not await inbox.deliver("reply-twice", "delivery-1", [{"type": "delta", "text": "hello"}])
        assert len(await direct.xrange(redis_keys.hook_inbox("reply-twice"))) == 1
    finally:
        await redelivering.aclose()
        await direct.aclose()


SLOW = Limit("chat", rate=1, period_s=10, burst=3)  # a unit back every 10 s: none comes back during a test


async def test_a_rate_limit_charge_run_twice_takes_its_units_once(redis_url: str) -> None:
    redelivering = Redis.from_url(redis_url)
    backend = RedisBackend(Redelivering(redelivering))
    try:
        decisions = [await backend.check("twice", SLOW, 1) for _ in range(3)]
        assert [(d.allowed, d.remaining) for d in decisions] == [(True, 2), (True, 1), (True, 0)]
        assert not (await backend.check("twice", SLOW, 1)).allowed  # the bucket holds three, no more
    finally:
        await redelivering.aclose()


async def test_a_rate_limit_refund_run_twice_gives_back_once(redis_url: str) -> None:
    direct, redelivering = Redis.from_url(redis_url), Redis.from_url(redis_url)
    once, twice = RedisBackend(direct), RedisBackend(Redelivering(redelivering))
    try:
        for _ in range(3):
            assert (await once.check("refund", SLOW, 1)).allowed
        await twice.adjust("refund", SLOW, -1)  # one unit back, though Redis ran it twice
        assert (await once.check("refund", SLOW, 1)).allowed
        assert not (await once.check("refund", SLOW, 1)).allowed
    finally:
        await redelivering.aclose()
        await direct.aclose()
