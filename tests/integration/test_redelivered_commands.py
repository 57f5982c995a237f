"""A command Redis ran whose answer the client lost, sent again (redis-py's cluster client retries a timed-out
command; any client may resend after a dropped connection): what the server keeps in Redis must come out as if it
had been sent once. Each case runs against a real redis-server through a client that sends each script and
pipeline twice (tests/redelivering.py); the others live beside the code they test (the locks, the reply log)."""

from __future__ import annotations

from redis.asyncio import Redis

from gima_server import redis_keys
from gima_server.agents.hook_inbox import HookInbox

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
