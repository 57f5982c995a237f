"""GIMA_REDIS_MODE=sentinel against a real master, replica and three sentinels started here: replies use the master
the sentinels name, and after the master is killed and a replica promoted, new replies use the new master."""

from __future__ import annotations

import asyncio
import shutil
import time
from pathlib import Path
from typing import Any, Iterator

import pytest
import redis

from gima_server import redis_keys
from gima_server.redis_client import sentinel_addresses

from ..conftest import MakeClient, sign_up
from ..redis_sentinel import MASTER_NAME, SentinelSet
from ..sse import SseEvent, parse_sse, read_until


@pytest.fixture
def sentinel_set(tmp_path: Path) -> Iterator[SentinelSet]:
    servers = SentinelSet(tmp_path / "redis")
    try:
        servers.start()
        yield servers
    finally:
        servers.stop()
        shutil.rmtree(tmp_path / "redis", ignore_errors=True)


def test_sentinel_urls_name_every_sentinel_the_database_and_the_password() -> None:
    assert sentinel_addresses("redis://:s3cret@h1:26379,h2:26380/2") == ([("h1", 26379), ("h2", 26380)], 2, "s3cret")
    assert sentinel_addresses("redis://h1,h2:1/") == ([("h1", 26379), ("h2", 1)], 0, None)


def _has_log(port: int, message_id: str) -> bool:
    client = redis.Redis(port=port, socket_timeout=1)
    try:
        return bool(client.exists(redis_keys.reply_log(message_id)))
    finally:
        client.close()


@pytest.mark.slow
async def test_replies_follow_the_master_the_sentinels_name_through_a_failover(
        make_client: MakeClient, sentinel_set: SentinelSet) -> None:
    client = await make_client(redis_mode="sentinel", redis_url=sentinel_set.url, redis_sentinel_master=MASTER_NAME,
                               redis_timeout_s=1.0, demo_reply_words=10)
    alice = await sign_up(client, "alice@example.com")
    events, _ = await alice.stream("before the failover")
    first = events[0].data["messageId"]
    assert events[-1].name == "done"
    assert _has_log(sentinel_set.master.port, first)  # written to the master the sentinels named
    await asyncio.to_thread(sentinel_set.kill_master_and_wait_for_promotion)
    deadline = time.monotonic() + 30
    while True:  # the first commands after the failover may still meet the dead master's connections
        events, _ = await alice.stream(f"after the failover {time.monotonic()}")
        second = events[0].data["messageId"]
        assert events[-1].name == "done"  # a reply never depends on Redis answering
        if await asyncio.to_thread(_has_log, sentinel_set.replica.port, second):
            break
        assert time.monotonic() < deadline, "replies never reached the promoted master"
        await asyncio.sleep(0.5)
    while True:  # limits fell back to local buckets during the failover ("fail open briefly"); they come back
        ready = await client.get("/ready")
        if ready.status == 200:
            break
        assert time.monotonic() < deadline + 30, await ready.text()
        await asyncio.sleep(0.5)


def _ids_once(events: list[SseEvent], first: int) -> None:
    ids = [e.id for e in events if e.id is not None]
    assert ids == list(range(first, first + len(ids))), ids  # every id once, in order, no gap
    assert events[-1].name == "done", events[-1]


async def _arrivals(resp: Any) -> list[tuple[float, SseEvent]]:
    """Every event of a stream with the moment it arrived."""
    got: list[tuple[float, SseEvent]] = []
    while frame := await resp.content.readuntil(b"\n\n"):
        got += [(time.monotonic(), event) for event in parse_sse(frame)[0]]
    return got


def _longest_pause(arrivals: list[tuple[float, SseEvent]]) -> float:
    times = [at for at, event in arrivals if event.id is not None]
    return max((b - a for a, b in zip(times, times[1:], strict=False)), default=0.0)


async def _follow_as_a_client_does(get: Any, headers: dict[str, str], message_id: str) -> list[tuple[float, SseEvent]]:
    """Follow from id 2 like EventSource or the page: on `backing_unavailable` (sent without an id), wait its
    retryAfter and resume from the last id seen."""
    arrivals: list[tuple[float, SseEvent]] = []
    last_id = 1
    while True:
        resp = await get(f"/api/chat/streams/{message_id}/events", {**headers, "Last-Event-ID": str(last_id)})
        assert resp.status == 200, await resp.text()
        got = await _arrivals(resp)
        arrivals += [(at, event) for at, event in got if event.id is not None]
        last_id = arrivals[-1][1].id if arrivals else last_id
        if arrivals and arrivals[-1][1].name == "done":
            return arrivals
        assert got and got[-1][1].name == "error" and got[-1][1].data["code"] == "backing_unavailable", got[-1:]
        await asyncio.sleep(got[-1][1].data["retryAfter"])


@pytest.mark.slow
async def test_the_master_killed_mid_reply_loses_no_event_for_readers_on_either_process(
        tmp_path: Path, sentinel_set: SentinelSet) -> None:
    """Two gima-server processes stream a reply each; each reply is read live on the process that makes it and
    followed through Redis from the other. The master is SIGKILLed mid-reply and a replica promoted: all four
    readers get ids 1..n once and the end; the longest pause a follower sees is the failover time clients feel."""
    import aiohttp

    from ..cluster import start_cluster

    cluster = start_cluster(tmp_path / "processes", None, 2, nginx=False, redis_url=sentinel_set.url,
                            redis_mode="sentinel", redis_sentinel_master=MASTER_NAME, redis_timeout_s="1",
                            demo_tokens_per_s="25", demo_reply_words="160")
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as http:
            origins, follows = [], []
            for i, email in ((0, "alice@example.com"), (1, "bob@example.com")):
                base, other = cluster.base(i), cluster.base(1 - i)
                signed = await http.post(f"{base}/api/auth/signup", headers={"Origin": base},
                                         json={"email": email, "password": "correct horse battery"})
                assert signed.status == 201, await signed.text()
                headers = {"Authorization": f"Bearer {(await signed.json())['accessToken']}"}
                http.cookie_jar.clear()
                resp = await http.post(f"{base}/api/chat/stream", json={"content": "through the failover"},
                                       headers=headers)
                first = await read_until(resp, lambda ev: len(ev) >= 3)
                origins.append((first, resp))
                follows.append(asyncio.ensure_future(_follow_as_a_client_does(
                    lambda path, h, o=other: http.get(f"{o}{path}", headers=h), headers, first[0].data["messageId"])))
            await asyncio.sleep(0.5)  # both followers are reading through Redis
            started = time.monotonic()
            await asyncio.to_thread(sentinel_set.kill_master_and_wait_for_promotion)
            promoted_after = time.monotonic() - started
            results = await asyncio.gather(*follows, *(_arrivals(resp) for _, resp in origins))
    finally:
        cluster.stop()
    pauses = []
    for arrivals, (first, _), rest in zip(results[:2], origins, results[2:], strict=True):
        origin = first + [event for _, event in rest]
        _ids_once(origin, 1)
        followed = [event for _, event in arrivals]
        _ids_once(followed, 2)
        assert [(e.id, e.data) for e in followed] == [(e.id, e.data) for e in origin[1:]]
        pauses.append(_longest_pause(arrivals))
    print(f"\nfailover: promoted {promoted_after:.1f} s after the kill; longest pause a follower saw "
          f"{max(pauses):.1f} s")
    assert max(pauses) < 30


@pytest.mark.slow
async def test_a_burst_in_sentinel_mode_queues_for_a_connection_instead_of_failing_at_the_cap(
        sentinel_set: SentinelSet) -> None:
    """The app's shared client waits for a free connection at its cap, as in single mode (redis-py's Sentinel pool
    raises MaxConnectionsError there): forty commands that each hold a connection, through four connections."""
    from gima_server.config import Settings
    from gima_server.redis_client import connect

    settings = Settings(redis_mode="sentinel", redis_url=sentinel_set.url, redis_sentinel_master=MASTER_NAME,
                        redis_max_connections=4, redis_timeout_s=1.0)
    queued = connect(settings, 2.0, blocking_pool=True)
    try:
        held = await asyncio.gather(*(queued.blpop([f"nothing:{i}"], timeout=0.1) for i in range(40)))
        assert held == [None] * 40
        assert len(queued.connection_pool._available_connections) <= 4
    finally:
        await queued.aclose()
