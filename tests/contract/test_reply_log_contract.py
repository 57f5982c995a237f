"""Reading a reply from any event id: the same answer from the producing process's memory and from the Redis
Stream another process reads. Each case runs against each ("local": the producing app; "redis": a second app
on the same Redis and data dir, which has the reply only through Redis; "redis-cluster": the same on a real
three-master Redis Cluster, GIMA_REDIS_MODE=cluster)."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from ..conftest import Api, MakeClient, quick_user
from ..redis_server import RedisServer
from ..sse import SseEvent, parse_sse, read_until

LOGS = ["local", "redis", "redis-cluster"]


@pytest.fixture
def log_backing(request: pytest.FixtureRequest, redis_url: str) -> dict[str, str]:
    """The settings of the Redis a case runs on: one server, or three masters in a cluster."""
    if request.node.callspec.params.get("log") == "redis-cluster":
        return {"redis_url": request.getfixturevalue("redis_cluster_url"), "redis_mode": "cluster"}
    return {"redis_url": redis_url}


async def _pair(make_client: MakeClient, backing: dict[str, str] | str, log: str, **settings: Any) -> tuple[Api, Api]:
    """(the producer's user, the reader's user): the same signed-in user on the producer or on another app."""
    backing = {"redis_url": backing} if isinstance(backing, str) else backing
    producer = await make_client(**backing, **settings)
    writer = await quick_user(producer, "alice@example.com")
    if log == "local":
        return writer, writer
    reader_app: TestClient = await make_client(**backing, **settings)
    return writer, Api(reader_app, writer.token, writer.user)


async def _follow_from_2(writer: Api, reader: Api, content: str) -> tuple[list[SseEvent], list[SseEvent]]:
    """The writer starts a reply; the reader follows it live from Last-Event-ID 2: (followed, the writer's own)."""
    resp = await writer.client.post("/api/chat/stream", json={"content": content}, headers=writer.headers)
    first = await read_until(resp, lambda ev: len(ev) >= 3)
    follower = await reader.client.get(f"/api/chat/streams/{first[0].data['messageId']}/events",
                                       headers={**reader.headers, "Last-Event-ID": "2"})
    followed, _ = parse_sse(await follower.read())
    return followed, first + parse_sse(await resp.read())[0]


def _shape(events: list[SseEvent]) -> list[tuple[int | None, str, Any]]:
    return [(e.id, e.name, e.data) for e in events]


@pytest.mark.parametrize("log", LOGS)
async def test_a_finished_reply_reads_the_same_from_every_id(
    make_client: MakeClient, log_backing: dict[str, str], log: str
) -> None:
    writer, reader = await _pair(make_client, log_backing, log)
    events, _ = await writer.stream("read me from anywhere")
    message_id, last = events[0].data["messageId"], events[-1].id
    assert last is not None
    for after in (0, 1, last // 2, last - 1):
        status, got = await reader.resume(message_id, after)
        assert status == 200 and _shape(got) == _shape([e for e in events if e.id is not None and e.id > after])
    assert (await reader.resume(message_id, last))[0] == 204
    assert (await reader.resume(message_id, last + 5))[0] == 204


@pytest.mark.parametrize("log", LOGS)
async def test_a_live_reply_is_followed_to_its_end(make_client: MakeClient, log_backing: dict[str, str], log: str) -> None:
    writer, reader = await _pair(make_client, log_backing, log, demo_tokens_per_s=200, demo_reply_words=20)
    followed, origin = await _follow_from_2(writer, reader, "follow me")
    assert _shape(followed) == _shape(origin[2:]) and followed[-1].name == "done"


@pytest.mark.parametrize("log", LOGS)
async def test_someone_elses_reply_is_not_found(make_client: MakeClient, log_backing: dict[str, str], log: str) -> None:
    writer, reader = await _pair(make_client, log_backing, log)
    events, _ = await writer.stream("mine alone")
    mallory = await quick_user(reader.client, "mallory@example.com")
    status, got = await mallory.resume(events[0].data["messageId"], 0)
    assert status == 404 and got == []
    cancel = await reader.client.post(f"/api/chat/streams/{events[0].data['messageId']}/cancel",
                                      headers=mallory.headers)
    assert cancel.status == 404


@pytest.mark.parametrize("log", LOGS)
async def test_a_cancel_reaches_the_reply(make_client: MakeClient, log_backing: dict[str, str], log: str) -> None:
    writer, reader = await _pair(make_client, log_backing, log, demo_tokens_per_s=50, demo_reply_words=200)
    resp = await writer.client.post("/api/chat/stream", json={"content": "stop me"}, headers=writer.headers)
    first = await read_until(resp, lambda ev: sum(e.name == "delta" for e in ev) >= 2)
    message_id = first[0].data["messageId"]
    cancel = await reader.client.post(f"/api/chat/streams/{message_id}/cancel", headers=reader.headers)
    assert cancel.status == 202
    rest, _ = parse_sse(await resp.read())
    assert rest[-1].name == "error" and rest[-1].data["code"] == "cancelled"


async def test_a_redis_emptied_mid_reply_gets_the_reply_back_whole(make_client: MakeClient, redis_url: str) -> None:
    """Redis restarted (or flushed) between two writes, with no error for the producer to notice: the next
    append finds the reply's keys gone and the producer resends it whole, so a reader elsewhere misses nothing."""
    from redis.asyncio import Redis

    writer, reader = await _pair(make_client, redis_url, "redis", demo_tokens_per_s=100, demo_reply_words=40)
    resp = await writer.client.post("/api/chat/stream", json={"content": "survive a flush"}, headers=writer.headers)
    first = await read_until(resp, lambda ev: len(ev) >= 5)
    redis = Redis.from_url(redis_url)
    try:
        await redis.flushdb()
    finally:
        await redis.aclose()
    second = await read_until(resp, lambda ev: len(ev) >= 5)
    follower = await reader.client.get(f"/api/chat/streams/{first[0].data['messageId']}/events",
                                       headers={**reader.headers, "Last-Event-ID": "1"})
    followed, _ = parse_sse(await follower.read())
    origin = first + second + parse_sse(await resp.read())[0]
    assert _shape(followed) == _shape(origin[1:]) and followed[-1].name == "done"


async def test_a_reader_after_a_redis_restart_sees_no_false_outage(
    make_client: MakeClient, redis_server: RedisServer, redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Redis restarts between two replies: the next reader elsewhere follows the new reply to its end at once
    (every pooled connection died with the old Redis; a dead connection's first command is no outage)."""
    writer, reader = await _pair(make_client, redis_url, "redis", demo_tokens_per_s=100, demo_reply_words=30)
    events, _ = await writer.stream("before the restart")
    assert (await reader.resume(events[0].data["messageId"], 2))[0] == 200  # the reading loop has read once
    redis_server.stop()
    redis_server.start()
    caplog.clear()
    followed, origin = await _follow_from_2(writer, reader, "after the restart")
    assert [e.data.get("code") for e in followed if e.name == "error"] == []
    assert _shape(followed) == _shape(origin[2:]) and followed[-1].name == "done"
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING and "Redis" in r.getMessage()]


@pytest.mark.parametrize("log", ["redis", "redis-cluster"])
async def test_a_redis_that_lost_its_newest_writes_gets_them_back_in_order(
    make_client: MakeClient, log_backing: dict[str, str], log: str
) -> None:
    """What a failover to a replica that lagged looks like (replication is asynchronous): Redis answers again
    with the state of a moment ago — one reply's last events gone, another reply's end gone — and no error for
    the producer to notice. The next append finds the reply behind what was written; the producer resends it
    and every reply that ended moments ago, whole, so readers elsewhere see every id once and each end."""
    from gima_server import redis_keys
    from gima_server.config import Settings
    from gima_server.redis_client import connect

    writer, reader = await _pair(make_client, log_backing, log, demo_tokens_per_s=40, demo_reply_words=40)
    redis = connect(Settings(redis_mode=log_backing.get("redis_mode", "single"), redis_url=log_backing["redis_url"]), 2.0)
    try:
        short = await writer.client.post("/api/chat/stream", json={"content": "ends soon"},
                                         headers=writer.headers)
        short_first = await read_until(short, lambda ev: len(ev) >= 3)
        other = await quick_user(writer.client, "bob@example.com")  # one reply per session: a second user's
        long = await writer.client.post("/api/chat/stream", json={"content": "goes on"}, headers=other.headers)
        long_first = await read_until(long, lambda ev: len(ev) >= 3)
        ids = [short_first[0].data["messageId"], long_first[0].data["messageId"]]
        keys = [key for message_id in ids for key in redis_keys.reply_keys(message_id)[:3]]
        then = {key: await redis.dump(key) for key in keys}  # the replica's state, a moment behind
        short_rest, _ = parse_sse(await short.read())  # the short reply ends; the long one goes on
        long_middle = await read_until(long, lambda ev: len(ev) >= 4)
        for message_id in ids:  # promoted: the newest writes never reached it. Each reply's keys at once, as a
            async with redis.pipeline(transaction=True) as promote:  # promotion is (key by key let the producer
                for key in redis_keys.reply_keys(message_id)[:3]:     # append between two of them)
                    promote.restore(key, 0, then[key], replace=True)
                await promote.execute()
        long_rest, _ = parse_sse(await long.read())
    finally:
        await redis.aclose()
    other_reader = Api(reader.client, other.token, other.user)
    for user, message_id, origin in ((reader, ids[0], short_first + short_rest),
                                     (other_reader, ids[1], long_first + long_middle + long_rest)):
        status, followed = await user.resume(message_id, 1)
        assert status == 200 and _shape(followed) == _shape(origin[1:]), message_id
        assert followed[-1].name == "done"
