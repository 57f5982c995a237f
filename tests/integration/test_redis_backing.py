"""Limits and idempotency shared through a real redis-server; and what happens when Redis goes away."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import aiohttp
from redis.asyncio import Redis

from ..conftest import MakeClient, log_in, same_origin, sign_up
from ..redis_server import RedisServer, free_port


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
        assert ready.status == 503 and body["status"] == "degraded"
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
    env.update({"GIMA_DATA_DIR": str(tmp_path), "GIMA_REDIS_URL": redis_url, "GIMA_RATE_LIMITS": "default=60/min/4"})
    proc = subprocess.Popen([sys.executable, "-m", "gima_server", "--port", str(port)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return proc, f"http://127.0.0.1:{port}"


async def _healthy(session: aiohttp.ClientSession, base: str) -> None:
    for _ in range(200):
        try:
            async with session.get(f"{base}/health") as resp:
                if resp.status == 200:
                    return
        except aiohttp.ClientConnectionError:
            await asyncio.sleep(0.05)
    raise AssertionError(f"{base} did not start")


async def test_two_server_processes_share_one_limit(tmp_path: Path, redis_url: str) -> None:
    (tmp_path / "secret_key").write_text("shared-secret-for-both-processes-0123456789")
    servers = [_start_server(tmp_path, redis_url) for _ in range(2)]
    try:
        async with aiohttp.ClientSession() as session:
            for _, base in servers:
                await _healthy(session, base)
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


async def test_a_reply_in_progress_on_another_instance_is_409(make_client: MakeClient, redis_url: str) -> None:
    one = await make_client(redis_url=redis_url, demo_tokens_per_s=100, demo_reply_words=100)
    two = await make_client(redis_url=redis_url)
    alice_one = await sign_up(one, "alice@example.com")
    alice_two = await log_in(two, "alice@example.com")
    running = await one.post("/api/chat/stream", json={"content": "slow"}, headers={**alice_one.headers, "Idempotency-Key": "k"})
    await running.content.readuntil(b"event: delta")
    elsewhere = await two.post("/api/chat/stream", json={"content": "slow"}, headers={**alice_two.headers, "Idempotency-Key": "k"})
    assert elsewhere.status == 409 and elsewhere.headers["Retry-After"] == "1"
    running.close()
