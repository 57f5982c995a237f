"""The replay log is bounded per reply, in total, and in time after the reply ends."""

from __future__ import annotations

import asyncio
import gc
import time
import weakref

import pytest

from gima_server import appkeys
from gima_server.agents.demo import DemoAgent
from gima_server.agents.models import Models
from gima_server.idempotency import MemoryIdempotencyStore
from gima_server.store.base import Exchange
from gima_server.store.sqlite import SqliteStore
from gima_server.streams.registry import Registry, RegistryLimits, StartRequest
from gima_server.streams.reply import ReplyLimits

from ..conftest import MakeClient, sign_up
from ..fakes import FakeClock
from ..sse import parse_sse, read_until


async def _run_replies(registry: Registry, sqlite_store: SqliteStore, count: int) -> list[str]:
    user = await sqlite_store.create_user(f"u{time.monotonic_ns()}@example.com", "h", "u", ("user",))
    ids = []
    for i in range(count):
        exchange = Exchange(user.id, f"chat{i}", "t", f"u{i}", f"m{i}", f"question number {i}", float(i))
        outcome = await registry.start(StartRequest(exchange, f"session{i}", "trace", None, "fp"))
        assert outcome.reply is not None
        await outcome.reply.task
        ids.append(outcome.message_id)
    return ids


async def test_finished_logs_are_kept_for_the_retention_time(sqlite_store: SqliteStore) -> None:
    clock = FakeClock()
    limits = RegistryLimits(0.3, retention_s=60, max_events_total=1_000_000, reply=ReplyLimits(32, 10_000))
    registry = Registry(sqlite_store, Models.single(DemoAgent(0, 0, 20), "gima-demo"), MemoryIdempotencyStore(60), limits,
                        clock=clock)
    [message_id] = await _run_replies(registry, sqlite_store, 1)
    user_id = registry._replies[message_id].user_id
    clock.now += 59
    registry.sweep()
    assert registry.find(user_id, message_id) is not None
    clock.now += 2
    registry.sweep()
    assert registry.find(user_id, message_id) is None


async def test_total_bound_evicts_the_oldest_finished_logs(sqlite_store: SqliteStore) -> None:
    limits = RegistryLimits(0.3, retention_s=3600, max_events_total=200, reply=ReplyLimits(32, 10_000))
    registry = Registry(sqlite_store, Models.single(DemoAgent(0, 0, 20), "gima-demo"), MemoryIdempotencyStore(60), limits)
    ids = await _run_replies(registry, sqlite_store, 6)
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


async def test_the_byte_budget_evicts_the_oldest_finished_replies_first(sqlite_store: SqliteStore) -> None:
    budget = 60_000
    limits = RegistryLimits(0.3, retention_s=3600, max_events_total=1_000_000, reply=ReplyLimits(32, 10_000),
                            max_retained_bytes=budget)
    registry = Registry(sqlite_store, Models.single(DemoAgent(0, 0, 20), "gima-demo"), MemoryIdempotencyStore(60), limits)
    ids = await _run_replies(registry, sqlite_store, 8)
    kept = [i for i in ids if i in registry._replies]
    assert kept == ids[-len(kept):] and 0 < len(kept) < 8  # the newest stay, the oldest went first
    sizes = [registry._replies[i].retained_bytes() for i in kept]
    assert registry.retained_bytes == sum(sizes) <= budget
    one = registry._replies[kept[-1]]
    frames = sum(len(e.frame) for e in one.events)
    assert sizes[-1] > frames + len(one.events) * 100  # counts what Python holds around the frames, not just them


async def test_a_resume_of_a_reply_dropped_for_the_budget_gets_the_stored_snapshot(make_client: MakeClient) -> None:
    client = await make_client(replay_retention_mb=0.05, demo_reply_words=30)  # about two replies' worth
    alice = await sign_up(client, "alice@example.com")
    first, _ = await alice.stream("the first question")
    message_id, final_id = first[0].data["messageId"], first[-1].id
    registry = client.app[appkeys.REGISTRY]
    for i in range(6):
        await alice.stream(f"another question {i}")
        if registry.find(alice.user["id"], message_id) is None:
            break
    assert registry.find(alice.user["id"], message_id) is None, "the first reply was never dropped"
    assert registry.retained_bytes <= 0.05 * 1024 * 1024
    status, resumed = await alice.resume(message_id, 3)
    assert status == 200
    assert [e.name for e in resumed] == ["snapshot", "done"]
    assert resumed[0].data["content"] == first[-1].data["content"] and resumed[0].data["historyLost"] is True
    assert resumed[-1].id == final_id


async def test_a_finished_reply_is_freed_as_soon_as_it_is_let_go(make_client: MakeClient) -> None:
    """No reference cycle holds a reply (and its events) after its retention: a completed one streamed over SSE, and
    a superseded one. With the cycle collector off, each must be gone once the registry drops it. (The response and
    its subscription, and a cancelled task's saved CancelledError, each kept every reply for the collector's rare
    full passes: bench/soak.py climbed by ~3 KB per reply.)"""
    client = await make_client(replay_retention_s=0, demo_tokens_per_s=200, demo_reply_words=20)
    alice = await sign_up(client, "alice@example.com")
    registry = client.app[appkeys.REGISTRY]
    gc.collect()
    gc.disable()
    try:
        first = await client.post("/api/chat/stream", json={"content": "one to supersede"}, headers=alice.headers)
        meta = (await read_until(first, lambda events: events))[0]
        superseded = weakref.ref(registry._replies[meta.data["messageId"]])
        second = await client.post("/api/chat/stream", json={"content": "one to finish"}, headers=alice.headers)
        meta = (await read_until(second, lambda events: events))[0]
        completed = weakref.ref(registry._replies[meta.data["messageId"]])
        assert parse_sse(await first.read())[0][-1].data["code"] == "superseded"
        assert parse_sse(await second.read())[0][-1].name == "done"
        for _ in range(50):
            await asyncio.sleep(0.01)
            if superseded() is None and completed() is None:
                break
        assert superseded() is None and completed() is None
    finally:
        gc.enable()


@pytest.mark.parametrize("until", [b"event: delta", b"event: done"], ids=["mid-reply", "after-the-end"])
async def test_a_stream_whose_client_hung_up_leaves_no_cycle(make_client: MakeClient, until: bytes) -> None:
    """A client that goes away mid-reply (a closed tab), or as soon as it has read the final event (as SDKs and load
    generators do): nothing of its stream may be left that only the cycle collector frees. The response and its
    subscription referring to each other kept the connection (some 30 objects) until a full pass — reproduced with
    the collector off: 88 of 500 connections of bench/turnover.py."""
    from gima_server.streams.sse import Subscription

    client = await make_client(demo_tokens_per_s=100, demo_reply_words=20)
    alice = await sign_up(client, "alice@example.com")
    server = client.server
    gc.collect()
    gc.disable()
    try:
        for n in range(4):
            reader, writer = await asyncio.open_connection(server.host, server.port)
            try:
                body = f'{{"content":"question {n}"}}'.encode()
                writer.write(f"POST /api/chat/stream HTTP/1.1\r\nHost: {server.host}\r\nContent-Type: application/json"
                             f"\r\nConnection: close\r\nAuthorization: Bearer {alice.token}\r\n"
                             f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
                seen = b""
                while until not in seen:
                    chunk = await reader.read(65_536)
                    assert chunk, seen
                    seen += chunk
            finally:
                writer.transport.abort()
        for _ in range(100):
            await asyncio.sleep(0.02)
            if not [o for o in gc.get_objects() if isinstance(o, Subscription)]:
                break
        assert [o for o in gc.get_objects() if isinstance(o, Subscription)] == []
    finally:
        gc.enable()
