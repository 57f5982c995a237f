"""Limits and idempotency shared through a real redis-server; and what happens when Redis goes away."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest
from redis.asyncio import Redis

from ..conftest import MakeClient, log_in, quick_user, same_origin, sign_up
from ..processes import wait_healthy
from ..redis_server import RedisServer, free_port
from ..sse import parse_sse, read_until


async def test_idempotency_is_shared_between_instances(make_client: MakeClient, redis_url: str) -> None:
    one = await make_client(redis_url=redis_url)
    two = await make_client(redis_url=redis_url)  # same data dir, so the same SQLite file
    alice_one = await sign_up(one, "alice@example.com")
    alice_two = await log_in(two, "alice@example.com")
    first, _ = await alice_one.stream("asked once", headers={"Idempotency-Key": "shared-key"})
    replay, resp = await alice_two.stream("asked once", headers={"Idempotency-Key": "shared-key"})
    assert resp.headers["Idempotent-Replayed"] == "true"
    assert replay[0].data["messageId"] == first[0].data["messageId"]
    assert replay[-1].data["content"] == first[-1].data["content"]
    changed = await two.post("/api/chat/stream", json={"content": "asked twice"},
                             headers={**alice_two.headers, "Idempotency-Key": "shared-key"})
    assert changed.status == 422


async def test_redis_down_falls_back_and_recovers(make_client: MakeClient, redis_server: RedisServer, redis_url: str) -> None:
    client = await make_client(redis_url=redis_url, redis_timeout_s=0.1, rate_limits="chat=600/min/100")
    alice = await sign_up(client, "alice@example.com")
    assert (await client.get("/ready")).status == 200
    await alice.stream("before the outage")
    redis_server.stop()
    try:
        during, _ = await alice.stream("during the outage")  # chat fails open onto local buckets
        assert during[-1].name == "done"
        client.session.cookie_jar.clear()
        login = await client.post("/api/auth/login", json={"email": "alice@example.com", "password": "correct horse battery"},
                                  headers=same_origin(client))
        assert login.status == 503 and login.headers["Retry-After"]  # auth fails closed
        ready = await client.get("/ready")
        body = await ready.json()
        assert ready.status == 503 and body["status"] == "degraded" and ready.headers["Retry-After"] == "5"
        assert body["checks"]["redis"].startswith("failed") and body["checks"]["rateLimits"].startswith("degraded")
        metrics = await (await client.get("/metrics")).text()
        assert 'gima_ratelimit_fallbacks_total{limit="chat"}' in metrics
    finally:
        redis_server.start()
    await asyncio.sleep(1.1)  # one probe interval
    after, _ = await alice.stream("after the outage")
    assert after[-1].name == "done"
    assert (await client.get("/ready")).status == 200
    redis = Redis.from_url(redis_url)
    try:
        assert await redis.exists(f"gima:rl:{{chat:user:{alice.user['id']}}}")  # shared buckets are used again
    finally:
        await redis.aclose()


def _start_server(tmp_path: Path, redis_url: str) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIMA_")}
    env.update({"GIMA_DATA_DIR": str(tmp_path), "GIMA_REDIS_URL": redis_url, "GIMA_RATE_LIMITS": "default=4/min/4",
                "GIMA_REDIS_TIMEOUT_S": "2"})  # a slow first call under load must not look like an outage
    proc = subprocess.Popen([sys.executable, "-m", "gima_server", "--port", str(port)], env=env,
                            stdout=subprocess.DEVNULL)
    return proc, f"http://127.0.0.1:{port}"


async def test_two_server_processes_share_one_limit(tmp_path: Path, redis_url: str) -> None:
    (tmp_path / "secret_key").write_text("shared-secret-for-both-processes-0123456789")
    servers = [_start_server(tmp_path, redis_url) for _ in range(2)]
    try:
        async with aiohttp.ClientSession() as session:
            for proc, base in servers:
                await wait_healthy(session, base, proc)
            body = {"email": "shared@example.com", "password": "a good password"}
            async with session.post(f"{servers[0][1]}/api/auth/signup", json=body) as resp:
                token = (await resp.json())["accessToken"]
            statuses = []
            for i in range(8):  # alternate between the two processes
                async with session.get(f"{servers[i % 2][1]}/api/chats", headers={"Authorization": f"Bearer {token}"}) as resp:
                    statuses.append(resp.status)
    finally:
        for proc, _ in servers:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=30)
    assert statuses == [200, 200, 200, 200, 429, 429, 429, 429]  # one shared bucket of 4, not two


async def test_an_idempotent_retry_on_another_instance_joins_the_running_reply(
    make_client: MakeClient, redis_url: str
) -> None:
    one = await make_client(redis_url=redis_url, demo_tokens_per_s=100, demo_reply_words=30)
    two = await make_client(redis_url=redis_url)
    alice_one = await sign_up(one, "alice@example.com")
    alice_two = await log_in(two, "alice@example.com")
    key = {"Idempotency-Key": "k"}
    running = await one.post("/api/chat/stream", json={"content": "slow"}, headers={**alice_one.headers, **key})
    await running.content.readuntil(b"event: delta")
    elsewhere = await two.post("/api/chat/stream", json={"content": "slow"}, headers={**alice_two.headers, **key})
    assert elsewhere.status == 200 and elsewhere.headers["Idempotent-Replayed"] == "true"
    joined, _ = parse_sse(await elsewhere.read())
    assert joined[0].name == "meta" and joined[-1].name == "done"
    assert [e.id for e in joined] == list(range(1, len(joined) + 1))  # from the start, nothing missing or repeated
    running.close()


async def test_cancel_previous_works_across_instances(make_client: MakeClient, redis_url: str) -> None:
    one = await make_client(redis_url=redis_url, demo_tokens_per_s=100, demo_reply_words=200)
    two = await make_client(redis_url=redis_url, demo_tokens_per_s=400, demo_reply_words=20)
    alice = await sign_up(one, "alice@example.com")  # the same login session (same JWT) on both instances
    first = await one.post("/api/chat/stream", json={"content": "on instance one"}, headers=alice.headers)
    seen = await read_until(first, lambda ev: sum(e.name == "delta" for e in ev) >= 3)
    second = await two.post("/api/chat/stream", json={"content": "on instance two", "chatId": seen[0].data["chatId"]},
                            headers=alice.headers)
    second_events, _ = parse_sse(await second.read())
    first_events = seen + parse_sse(await first.read())[0]
    assert first_events[-1].data["code"] == "superseded" and second_events[-1].name == "done"
    messages = await alice.messages(seen[0].data["chatId"])
    assert [m.get("status") for m in messages] == [None, "cancelled", None, "complete"]


async def test_a_stale_lock_holder_cannot_overwrite_the_new_one(redis_url: str, tmp_path: Path) -> None:
    from gima_server.locks import RedisLocks
    from gima_server.store.base import Exchange
    from gima_server.store.sqlite import SqliteStore

    client = Redis.from_url(redis_url)
    store = SqliteStore(tmp_path / "fence.sqlite3")
    await store.open()
    try:
        locks = RedisLocks(client)
        user = await store.create_user("f@example.com", "h", "f", ("user",))
        stale = await locks.try_acquire("session:s1", 0.1)
        assert stale is not None
        await store.begin_exchange(Exchange(user.id, "c1", "t", "u1", "m1", "q", 1.0, fence=stale.fence))
        assert await store.checkpoint_reply("m1", "old producer", stale.fence)
        await asyncio.sleep(0.2)  # the old producer stalls past its lease
        fresh = await locks.try_acquire("session:s1", 5)
        assert fresh is not None and fresh.fence > stale.fence
        assert await store.checkpoint_reply("m1", "new producer", fresh.fence)
        assert not await store.finish_reply("m1", "old producer wakes up", "complete", "stop", 9, stale.fence)
        message = await store.get_message(user.id, "m1")
        assert message is not None and message.content == "new producer" and message.status == "streaming"
    finally:
        await store.close()
        await client.aclose()


async def test_a_burst_waits_for_a_redis_connection_instead_of_falling_back(
    make_client: MakeClient, redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """More concurrent requests than Redis connections: they queue for one (redis-py's default pool would
    raise MaxConnectionsError and send every lock and limit to the in-process fall-back)."""
    client = await make_client(redis_url=redis_url, redis_max_connections=4, redis_timeout_s=2.0,
                               demo_tokens_per_s=0, demo_first_token_ms=0, rate_limits="off")
    users = [await quick_user(client, f"u{i}@example.com") for i in range(24)]  # one stream per session:
    with caplog.at_level(logging.WARNING):  # two in one session would supersede each other
        results = await asyncio.gather(*(user.stream(f"burst {n}") for n, user in enumerate(users)))
    assert all(events[-1].name == "done" for events, _ in results)
    from gima_server import appkeys

    shared = client.server.app[appkeys.REDIS]
    assert shared is not None
    assert sorted(await asyncio.gather(*(shared.incr("burst") for _ in range(300)))) == list(range(1, 301))
    fallbacks = [r.getMessage() for r in caplog.records if "MaxConnections" in r.getMessage() or "fall" in r.getMessage()]
    assert fallbacks == []
