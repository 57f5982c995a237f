"""The replay log is bounded per reply, in total, and in time after the reply ends."""

from __future__ import annotations

import time
from pathlib import Path
from typing import AsyncIterator

import pytest

from gima_server.agents.demo import DemoAgent
from gima_server.idempotency import MemoryIdempotencyStore
from gima_server.store.base import Exchange
from gima_server.store.sqlite import SqliteStore
from gima_server.streams.registry import Registry, RegistryLimits, StartRequest
from gima_server.streams.reply import ReplyLimits

from ..conftest import MakeClient, sign_up
from ..fakes import FakeClock


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    s = SqliteStore(tmp_path / "bounds.sqlite3")
    await s.open()
    yield s
    await s.close()


async def _run_replies(registry: Registry, store: SqliteStore, count: int) -> list[str]:
    user = await store.create_user(f"u{time.monotonic_ns()}@example.com", "h", "u", ("user",))
    ids = []
    for i in range(count):
        exchange = Exchange(user.id, f"chat{i}", "t", f"u{i}", f"m{i}", f"question number {i}", float(i))
        outcome = await registry.start(StartRequest(exchange, f"session{i}", "trace", None, "fp"))
        assert outcome.reply is not None
        await outcome.reply.task
        ids.append(outcome.message_id)
    return ids


async def test_finished_logs_are_kept_for_the_retention_time(store: SqliteStore) -> None:
    clock = FakeClock()
    limits = RegistryLimits(0.3, retention_s=60, max_events_total=1_000_000, reply=ReplyLimits(32, 10_000))
    registry = Registry(store, DemoAgent(0, 0, 20), MemoryIdempotencyStore(60), limits, clock=clock)
    [message_id] = await _run_replies(registry, store, 1)
    user_id = registry._replies[message_id].user_id
    clock.now += 59
    registry.sweep()
    assert registry.find(user_id, message_id) is not None
    clock.now += 2
    registry.sweep()
    assert registry.find(user_id, message_id) is None


async def test_total_bound_evicts_the_oldest_finished_logs(store: SqliteStore) -> None:
    limits = RegistryLimits(0.3, retention_s=3600, max_events_total=200, reply=ReplyLimits(32, 10_000))
    registry = Registry(store, DemoAgent(0, 0, 20), MemoryIdempotencyStore(60), limits)
    ids = await _run_replies(registry, store, 6)
    kept = [i for i in ids if i in registry._replies]
    assert kept == ids[-len(kept):] and 0 < len(kept) < 6
    assert sum(len(registry._replies[i].events) for i in kept) <= 200


async def test_a_reply_over_its_event_bound_ends_with_too_long_and_keeps_its_text(make_client: MakeClient) -> None:
    client = await make_client(replay_max_events_per_reply=50, demo_reply_words=200)
    alice = await sign_up(client, "alice@example.com")
    events, _ = await alice.stream("never ending story")
    assert len(events) == 50 and events[-1].name == "error" and events[-1].data["code"] == "too_long"
    stored = (await alice.messages(events[0].data["chatId"]))[-1]
    assert stored["status"] == "error" and stored["content"] == "".join(e.data["text"] for e in events if e.name == "delta")
