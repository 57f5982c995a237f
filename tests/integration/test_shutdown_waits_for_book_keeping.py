"""Shutting down waits for every reply's book-keeping, not only for its last event (found in CI: a reply cancelled
just before a test app closed refunded its unused tokens through Redis after the app had closed its Redis client;
redis-py opened a new connection for it, which nothing closed).

A reply ends in two steps: its last event frees the session for the next message at once, and then its finishing
work (the idempotency record kept, the token budget settled, webhooks queued) runs. The registry's close must wait
for that second step too, or the Redis client and the sqlite_store close under it."""

from __future__ import annotations

import asyncio
import time

import pytest

from gima_server import appkeys
from gima_server.agents.demo import DemoAgent
from gima_server.agents.models import Models
from gima_server.idempotency import MemoryIdempotencyStore
from gima_server.store.base import Exchange
from gima_server.store.sqlite import SqliteStore
from gima_server.streams.registry import Registry, RegistryLimits, StartRequest
from gima_server.streams.reply import Reply, ReplyLimits

from ..conftest import MakeClient, quick_user
from ..redis_link import RedisLink
from ..sse import parse_sse


@pytest.mark.parametrize("retention_s", [60.0, 0.0], ids=["kept-for-replay", "dropped-at-once"])
async def test_close_waits_for_a_finished_replys_book_keeping(sqlite_store: SqliteStore, retention_s: float) -> None:
    limits = RegistryLimits(0.3, retention_s=retention_s, max_events_total=1_000_000, reply=ReplyLimits(32, 10_000))
    registry = Registry(sqlite_store, Models.single(DemoAgent(0, 0, 20), "gima-demo"), MemoryIdempotencyStore(60), limits)
    user = await sqlite_store.create_user("keeping@example.com", "h", "u", ("user",))
    gate, done = asyncio.Event(), []

    async def slow_book_keeping(reply: Reply) -> None:
        await gate.wait()
        done.append(reply.message_id)

    exchange = Exchange(user.id, "chat", "t", "u1", "m1", "a question", time.time())
    outcome = await registry.start(StartRequest(exchange, "session", "trace", None, "fp", (slow_book_keeping,)))
    reply = outcome.reply
    assert reply is not None
    while not reply.finished:  # until the last event is out; its book-keeping then waits at the gate
        await reply.wait_beyond(len(reply.events))
    assert reply.events[-1].name == "done" and not reply.task.done()

    closing = asyncio.create_task(registry.close())
    await asyncio.sleep(0.1)
    assert not closing.done(), "close returned while a reply's book-keeping was still running"
    gate.set()
    await asyncio.wait_for(closing, 5)
    assert done == ["m1"] and reply.task.done()


async def test_an_app_closing_right_after_a_reply_leaves_no_redis_connection_open(
    make_client: MakeClient, redis_link: RedisLink,
) -> None:
    """The reply's token refund goes through a slow Redis (its answers held 0.3 s) while the app closes."""
    client = await make_client(redis_url=redis_link.url, demo_reply_words=10)
    alice = await quick_user(client, "alice@example.com")
    redis = client.app[appkeys.REDIS]
    assert redis is not None
    pool = redis.connection_pool
    resp = await client.post("/api/chat/stream", json={"content": "a short one"}, headers=alice.headers)
    redis_link.answer_delay_s = 0.3
    events, _ = parse_sse(await resp.read())
    assert events[-1].name == "done"
    await client.close()
    unfinished = [t.get_name() for t in asyncio.all_tasks() if t.get_name().startswith("reply-") and not t.done()]
    assert unfinished == [], "a reply was still finishing after its app closed"
    await asyncio.sleep(0.5)  # what a reply left running would do meanwhile (reconnect, as redis-py did)
    opened = [c for c in [*pool._available_connections, *pool._in_use_connections] if c.is_connected]
    assert opened == [], f"{len(opened)} Redis connection(s) left open after the app closed"
