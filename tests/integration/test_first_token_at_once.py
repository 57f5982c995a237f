"""On a saturated loop later events are held for the shared wake-up, but never the first token: the meta event, an
agent's start and the first token reach the subscriber at once (ADR 9, amended)."""

from __future__ import annotations

import asyncio

from gima_server.agents.demo import DemoAgent
from gima_server.agents.models import Models
from gima_server.idempotency import MemoryIdempotencyStore
from gima_server.store.base import Exchange
from gima_server.store.sqlite import SqliteStore
from gima_server.streams.registry import Registry, RegistryLimits, StartRequest
from gima_server.streams.reply import Reply, ReplyLimits
from gima_server.streams.wakeups import Wakeups


class Recorder:
    """A subscriber that notes, at each push, the names of the events it has been pushed so far."""

    def __init__(self, reply: Reply) -> None:
        self.reply = reply
        self.seen: list[list[str]] = []

    def push(self) -> None:
        self.seen.append([event.name for event in self.reply.events])


async def test_the_first_token_is_pushed_at_once_while_later_ones_wait_for_the_window(sqlite_store: SqliteStore) -> None:
    held = Wakeups(lambda: 0.0, max_window_s=10, busy_share=lambda: 1.0)  # saturated: later events held (10 s)
    agent = DemoAgent(50, 0, 30)  # the multi-agent demo: meta, the planner's start, then its first token
    limits = RegistryLimits(0.3, retention_s=60, max_events_total=1_000_000, reply=ReplyLimits(32, 10_000))
    registry = Registry(sqlite_store, Models.single(agent, "gima-demo"), MemoryIdempotencyStore(60), limits,
                        wakeups=held)
    try:
        user = await sqlite_store.create_user("first@example.com", "h", "u", ("user",))
        outcome = await registry.start(StartRequest(Exchange(user.id, "chat", "t", "u1", "m1", "a question", 1.0),
                                                    "session", "trace", None, "fp"))
        reply = outcome.reply
        assert reply is not None
        recorder = Recorder(reply)
        reply.subscribe(recorder)
        await asyncio.sleep(0.2)  # ~10 tokens are due by then (20 ms each); the window holds all but the first
        pushed = [names for names in recorder.seen if "delta" in names]
        assert pushed, recorder.seen  # the first token was pushed without waiting for the window
        assert pushed[0].count("delta") == 1 and pushed[0][:2] == ["meta", "agent"]
        assert len(reply.events) > len(pushed[-1])  # later tokens are held meanwhile
        await reply.task
    finally:
        await registry.close()
