"""A reply's first step runs in the turn that accepts its message: the model is asked before the route answers, not
a loop turn later (a turn of a saturated loop is ~1 s in bench.ten_thousand's ramp, paid by every first token)."""

from __future__ import annotations

import asyncio

from gima_server.agents.demo import DemoAgent
from gima_server.agents.models import Models
from gima_server.idempotency import MemoryIdempotencyStore
from gima_server.store.base import Exchange
from gima_server.store.sqlite import SqliteStore
from gima_server.streams.registry import Registry, RegistryLimits, StartRequest
from gima_server.streams.reply import Reply, ReplyLimits


def _registry(store: SqliteStore) -> Registry:
    limits = RegistryLimits(0.3, retention_s=60, max_events_total=1_000_000, reply=ReplyLimits(32, 10_000))
    return Registry(store, Models.single(DemoAgent(50, 0, 30), "gima-demo"), MemoryIdempotencyStore(60), limits)


async def _send(registry: Registry, user_id: str, n: int, content: str) -> Reply:
    """Message n of the session's one chat (the first makes it)."""
    exchange = Exchange(user_id, "chat", "t" if n == 1 else None, f"u{n}", f"m{n}", content, float(n))
    outcome = await registry.start(StartRequest(exchange, "session", "trace", None, f"fp{n}"))
    assert outcome.reply is not None
    return outcome.reply


async def test_the_agent_is_asked_before_start_returns(sqlite_store: SqliteStore) -> None:
    registry = _registry(sqlite_store)
    try:
        user = await sqlite_store.create_user("eager@example.com", "h", "u", ("user",))
        reply = await _send(registry, user.id, 1, "a question")
        # No loop turn since the reply was made: its agent has already said its first agent starts.
        assert [e.name for e in reply.events] == ["meta", "agent"] and b"\"phase\":\"start\"" in reply.events[1].frame
        await reply.task
        assert reply.events[-1].name == "done"
    finally:
        await registry.close()


async def test_a_reply_superseded_as_it_starts_ends_cancelled(sqlite_store: SqliteStore) -> None:
    """The session's next message cancels a reply whose first step ran eagerly (its task not yet stepped)."""
    registry = _registry(sqlite_store)
    try:
        user = await sqlite_store.create_user("eager2@example.com", "h", "u", ("user",))
        first = await _send(registry, user.id, 1, "one question")
        second = await _send(registry, user.id, 2, "another one")
        await asyncio.gather(first.task, second.task, return_exceptions=True)
        assert first.events[-1].name == "error" and first.end_code == "superseded"
        assert second.events[-1].name == "done"
    finally:
        await registry.close()
