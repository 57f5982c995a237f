"""A new reply is announced in Redis beside the write of every running reply, never queued behind it.

With 1,000 running replies that write took 100-150 ms on a saturated loop, and every start waited for it (its
reply must be in Redis before the client learns its id). Here the running replies' write is held at a gate in
front of a real redis-server, and a reply started meanwhile must still be announced, and nothing is lost or
written twice once the gate opens.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

from redis.asyncio import Redis

from gima_server import redis_keys
from gima_server.agents.demo import DemoAgent
from gima_server.agents.models import Models
from gima_server.idempotency import MemoryIdempotencyStore
from gima_server.observability.metrics import Metrics
from gima_server.store.base import Exchange
from gima_server.store.sqlite import SqliteStore
from gima_server.streams.publisher import LogPublisher, LogSettings
from gima_server.streams.registry import Registry, RegistryLimits, StartRequest
from gima_server.streams.reply import Reply, ReplyLimits

from ..redelivering import Redelivering


class GatedRedis:
    """The real client, except that a pipeline naming a held reply waits at the gate before it is sent."""

    def __init__(self, redis: Redis) -> None:
        self._redis = redis
        self.held: set[str] = set()
        self.watched: set[str] = set()
        self.gate = asyncio.Event()
        self.waiting = asyncio.Event()  # a write of a held reply is waiting at the gate
        self.writes: dict[str, int] = {}  # pipelines sent, by the reply they named

    def __getattr__(self, name: str) -> Any:
        return getattr(self._redis, name)

    def pipeline(self, transaction: bool = True) -> Any:
        pipe = self._redis.pipeline(transaction=transaction)
        send = pipe.execute

        async def execute(raise_on_error: bool = True) -> list[Any]:
            named = " ".join(str(arg) for args, _ in pipe.command_stack for arg in args)
            for message_id in self.watched:
                if message_id in named:
                    self.writes[message_id] = self.writes.get(message_id, 0) + 1
            if any(message_id in named for message_id in self.held):
                self.waiting.set()
                await self.gate.wait()
            return await send(raise_on_error=raise_on_error)

        pipe.execute = execute
        return pipe


async def _start(registry: Registry, user_id: str, n: int) -> Reply:
    exchange = Exchange(user_id, f"chat{n}", "t", f"u{n}", f"m{n}-{time.monotonic_ns()}", f"question {n}", float(n))
    outcome = await registry.start(StartRequest(exchange, f"session{n}", "trace", None, "fp"))
    assert outcome.reply is not None
    return outcome.reply


async def _logged_ids(redis: Redis, message_id: str) -> list[int]:
    return [int(entry_id.decode().split("-")[1]) for entry_id, _ in await redis.xrange(redis_keys.reply_log(message_id))]


async def _all_logged(redis: Redis, reply: Reply) -> list[int]:
    """The ids in Redis once the write that follows the reply's end has landed (or after 5 s)."""
    for _ in range(100):
        if len(await _logged_ids(redis, reply.message_id)) == len(reply.events):
            break
        await asyncio.sleep(0.05)
    return await _logged_ids(redis, reply.message_id)


async def _stop(jobs: list[asyncio.Task[None]]) -> None:
    for job in jobs:
        job.cancel()
    for job in jobs:
        with contextlib.suppress(asyncio.CancelledError):
            await job


def _publishing(sqlite_store: SqliteStore, redis: GatedRedis | Redelivering, tokens_per_s: float, busy_pause_s: float = 0.0
                ) -> tuple[LogPublisher, Registry, list[asyncio.Task[None]]]:
    """A registry whose replies (demo agent, 30-40 words) are published through `redis`, and its two loops."""
    settings = LogSettings(process_id="p1", owner_timeout_s=10, retention_s=60, stream_maxlen=1000,
                           interrupted_id=10_001, publish_interval_s=0.005)
    publisher = LogPublisher(redis, settings, Metrics(), busy_pause_s=lambda: busy_pause_s)  # type: ignore[arg-type]
    limits = RegistryLimits(0.3, retention_s=60, max_events_total=1_000_000, reply=ReplyLimits(32, 10_000))
    agent = DemoAgent(tokens_per_s, 0, 40)
    registry = Registry(sqlite_store, Models.single(agent, "gima-demo"), MemoryIdempotencyStore(60), limits,
                        publisher=publisher, announce_timeout_s=3.0)
    return publisher, registry, [asyncio.create_task(publisher.run()), asyncio.create_task(publisher.announce())]


async def test_a_new_reply_is_announced_while_the_running_replies_write_waits(redis_url: str, sqlite_store: SqliteStore) -> None:
    direct = Redis.from_url(redis_url)
    gated = GatedRedis(Redis.from_url(redis_url))
    _, registry, jobs = _publishing(sqlite_store, gated, 20)
    try:
        user = await sqlite_store.create_user("announce@example.com", "h", "u", ("user",))
        running = await _start(registry, user.id, 1)
        assert await direct.hexists(redis_keys.reply_info(running.message_id), "user")  # announced at its start

        gated.held.add(running.message_id)  # its next events' write now waits at the gate
        await asyncio.wait_for(gated.waiting.wait(), 5)
        newcomer = await _start(registry, user.id, 2)

        # The start returned because its reply is in Redis, not because the wait for it timed out.
        assert await direct.hexists(redis_keys.reply_info(newcomer.message_id), "user")
        assert not gated.gate.is_set() and len(await _logged_ids(direct, running.message_id)) < len(running.events)

        gated.gate.set()
        await asyncio.gather(running.task, newcomer.task)
        for reply in (running, newcomer):
            assert await _all_logged(direct, reply) == list(range(1, len(reply.events) + 1))
    finally:
        await _stop(jobs)
        await registry.close()
        await gated.aclose()
        await direct.aclose()


async def test_on_a_busy_loop_each_write_carries_several_events_of_a_reply(redis_url: str, sqlite_store: SqliteStore) -> None:
    direct = Redis.from_url(redis_url)
    counting = GatedRedis(Redis.from_url(redis_url))
    # The pause a busy loop asks for (Wakeups.window_s when the loop is saturated), long here to leave no doubt.
    _, registry, jobs = _publishing(sqlite_store, counting, 100, busy_pause_s=0.2)
    try:
        user = await sqlite_store.create_user("busy@example.com", "h", "u", ("user",))
        exchange = Exchange(user.id, "chat", "t", "u1", "m-busy", "a question", 1.0)
        counting.watched.add("m-busy")
        outcome = await registry.start(StartRequest(exchange, "session", "trace", None, "fp"))
        assert outcome.reply is not None
        await outcome.reply.task
        events = len(outcome.reply.events)
        assert await _all_logged(direct, outcome.reply) == list(range(1, events + 1))
        assert events >= 40 and counting.writes["m-busy"] <= events / 4, (events, counting.writes)
    finally:
        await _stop(jobs)
        await registry.close()
        await counting.aclose()
        await direct.aclose()


async def test_a_write_delivered_twice_leaves_the_reply_as_it_was_written_once(
    redis_url: str, sqlite_store: SqliteStore
) -> None:
    direct = Redis.from_url(redis_url)
    redelivering = Redelivering(Redis.from_url(redis_url))
    _, registry, jobs = _publishing(sqlite_store, redelivering, 200)
    try:
        user = await sqlite_store.create_user("twice@example.com", "h", "u", ("user",))
        reply = await _start(registry, user.id, 1)
        await reply.task
        assert await _all_logged(direct, reply) == list(range(1, len(reply.events) + 1))
        stored = await direct.get(redis_keys.reply_text(reply.message_id))
        assert len(reply.text) > 100 and stored is not None and stored.decode() == reply.text
    finally:
        await _stop(jobs)
        await registry.close()
        await redelivering.aclose()
        await direct.aclose()
