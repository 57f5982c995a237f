"""Three gima-server processes, one Redis, behind nginx round-robin: one service — on one data dir (SQLite), and
again with a data dir each on PostgreSQL (nothing on a shared disk).

Every test drives real processes over HTTP; nothing is sticky. Each asserts the exact event ids a client got
(nothing lost or repeated) and compares the text with the stored message.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any, AsyncIterator, Callable, Iterator

import aiohttp
import pytest

from gima_server.dialects.ui_routes import stored_chat_id

from ..cluster import Cluster, start_cluster
from ..js_clients import install_js_clients, run_node
from ..postgres_server import drop_database, fresh_database
from ..redis_server import RedisServer, own_redis
from ..sse import SseEvent, parse_sse, read_until

pytestmark = pytest.mark.slow


class User:
    def __init__(self, http: aiohttp.ClientSession, token: str, user_id: str) -> None:
        self.http = http
        self.token = token
        self.id = user_id

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    async def post(self, base: str, content: str, **extra: Any) -> aiohttp.ClientResponse:
        headers = {**self.headers, **extra.pop("headers", {})}
        return await self.http.post(f"{base}/api/chat/stream", json={"content": content, **extra}, headers=headers)

    async def stream(self, base: str, content: str, **extra: Any) -> list[SseEvent]:
        resp = await self.post(base, content, **extra)
        assert resp.status == 200, await resp.text()
        return parse_sse(await resp.read())[0]

    async def events(self, base: str, message_id: str, last_id: int | None = None) -> aiohttp.ClientResponse:
        headers = dict(self.headers)
        if last_id is not None:
            headers["Last-Event-ID"] = str(last_id)
        return await self.http.get(f"{base}/api/chat/streams/{message_id}/events", headers=headers)

    async def resume(self, base: str, message_id: str, last_id: int | None = None) -> tuple[int, list[SseEvent]]:
        resp = await self.events(base, message_id, last_id)
        return resp.status, parse_sse(await resp.read())[0]

    async def message(self, base: str, chat_id: str, message_id: str) -> dict[str, Any]:
        async with self.http.get(f"{base}/api/chats/{chat_id}/messages", headers=self.headers) as resp:
            assert resp.status == 200
            messages = (await resp.json())["messages"]
        return next(m for m in messages if m["id"] == message_id)

    async def assistant_messages(self, base: str, chat_id: str) -> list[dict[str, Any]]:
        async with self.http.get(f"{base}/api/chats/{chat_id}/messages", headers=self.headers) as resp:
            return [m for m in (await resp.json())["messages"] if m["role"] == "assistant"]


async def sign_up(http: aiohttp.ClientSession, base: str, email: str) -> User:
    async with http.post(f"{base}/api/auth/signup", json={"email": email, "password": "correct horse battery"},
                         headers={"Origin": base}) as resp:
        assert resp.status == 201, await resp.text()
        body = await resp.json()
    http.cookie_jar.clear()  # the bearer token alone speaks for the user: no cookie rides along
    return User(http, body["accessToken"], body["user"]["id"])


def text_of(events: list[SseEvent]) -> str:
    """The reply as a client shows it: a snapshot replaces the text, deltas add to it."""
    text = ""
    for event in events:
        if event.name == "snapshot":
            text = event.data["content"]
        elif event.name == "delta":
            text += event.data["text"]
    return text


def one_begins_the_other(a: str, b: str) -> bool:
    """The client stopped reading a moment before the kill, so the stored text may be a little longer or shorter."""
    return a.startswith(b) or b.startswith(a)


def assert_no_gap_or_repeat(events: list[SseEvent]) -> None:
    ids = [e.id for e in events if e.id is not None]
    assert ids == sorted(set(ids)), f"ids repeat or go back: {ids}"
    numbered = [e for e in events if e.id is not None and e.name != "snapshot"]
    for before, after in zip(numbered, numbered[1:], strict=False):
        snapshot_between = any(e.name == "snapshot" and before.id < e.id <= after.id for e in events)  # type: ignore[operator]
        assert after.id == before.id + 1 or snapshot_between or after.data.get("code") == "interrupted", (  # type: ignore[operator]
            f"silent gap between {before.id} and {after.id}"
        )


cluster_redis = pytest.fixture(scope="module")(own_redis)
redis = pytest.fixture(own_redis)  # a test's own: it may kill it


@pytest.fixture(scope="module", params=["one-data-dir", "postgresql-no-shared-disk"])
def cluster(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
            cluster_redis: RedisServer) -> Iterator[Cluster]:
    """Every test below runs on both: three processes on one box's data dir (SQLite), and three that share
    nothing but PostgreSQL and Redis (a data dir each, the signing key as configuration)."""
    database = ""
    if request.param == "postgresql-no-shared-disk":
        database = asyncio.run(fresh_database(request.getfixturevalue("postgres_base_url")))
    started = start_cluster(tmp_path_factory.mktemp("cluster"), cluster_redis, 3, postgres_url=database)
    yield started
    started.stop()
    if database:
        asyncio.run(drop_database(database))


async def test_processes_that_share_no_disk_keep_nothing_the_others_need(cluster: Cluster, alice: User,
                                                                           http: aiohttp.ClientSession) -> None:
    events = await alice.stream(cluster.base(0), "hello from host 0")
    chat_id = events[0].data["chatId"]
    for i in range(3):  # signed in on one host, known to every other: the token and the history are shared
        assert [m["content"] for m in await alice.assistant_messages(cluster.base(i), chat_id)] == [text_of(events)]
    if not cluster.host_dirs:  # one box: the SQLite file and the key are shared through the one data dir
        assert (cluster.data_dir / "gima.sqlite3").exists() and (cluster.data_dir / "secret_key").exists()
        return
    kept = sorted({p.name for d in cluster.host_dirs if d.exists() for p in d.iterdir()})
    assert not {"gima.sqlite3", "secret_key", "signing_keys.json"} & set(kept), kept


MakeCluster = Callable[..., Cluster]


@pytest.fixture
def make_cluster(tmp_path: Path) -> Iterator[MakeCluster]:
    """Clusters of a test's own (other settings, or processes it kills), stopped after it."""
    made: list[Cluster] = []

    def make(redis_server: RedisServer | None, processes: int, **settings: Any) -> Cluster:
        made.append(start_cluster(tmp_path / f"cluster{len(made)}", redis_server, processes, **settings))
        return made[-1]

    yield make
    for cluster in made:
        cluster.stop()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        yield session


_users = iter(range(10_000))


@pytest.fixture
async def alice(http: aiohttp.ClientSession, cluster: Cluster) -> User:
    return await sign_up(http, cluster.front, f"alice{next(_users)}@example.com")


async def test_a_reply_read_through_nginx_in_pieces_arrives_whole(cluster: Cluster, alice: User) -> None:
    """POST, then cut the connection every few events and resume through the balancer until the end."""
    resp = await alice.post(cluster.front, "resume me across processes")
    seen = await read_until(resp, lambda ev: len(ev) >= 4)
    resp.close()
    message_id, chat_id = seen[0].data["messageId"], seen[0].data["chatId"]
    for _ in range(50):
        if seen[-1].name in ("done", "error"):
            break
        resp = await alice.events(cluster.front, message_id, seen[-1].id)
        assert resp.status == 200
        seen += await read_until(resp, lambda ev: len(ev) >= 5 or bool(ev) and ev[-1].name in ("done", "error"))
        resp.close()
    assert seen[-1].name == "done"
    assert [e.id for e in seen] == list(range(1, len(seen) + 1))
    stored = await alice.message(cluster.front, chat_id, message_id)
    assert text_of(seen) == seen[-1].data["content"] == stored["content"] and stored["status"] == "complete"
    served = cluster.upstreams_served(f"/api/chat/streams/{message_id}/events")
    assert len(set(served)) == 3, f"the resumes should have reached every process, got {served}"
    # Finished: every process replays it the same way, and says 204 to a client that saw the end.
    for i in range(3):
        status, replay = await alice.resume(cluster.base(i), message_id, 0)
        assert status == 200 and [(e.id, e.name, e.data) for e in replay] == [(e.id, e.name, e.data) for e in seen]
        status, tail = await alice.resume(cluster.base(i), message_id, seen[-3].id)
        assert status == 200 and [e.id for e in tail] == [seen[-2].id, seen[-1].id]
        assert (await alice.resume(cluster.base(i), message_id, seen[-1].id))[0] == 204


def assert_reached_different_processes(cluster: Cluster, since: int, part: str, count: int) -> None:
    # nginx logs a request once it has closed it, which may be a moment after the client read its last byte.
    deadline = time.monotonic() + 3
    served = cluster.upstreams_served(part, since)
    while len(served) < count and time.monotonic() < deadline:
        time.sleep(0.02)
        served = cluster.upstreams_served(part, since)
    assert len(served) >= count and len(set(served)) == count, f"expected {count} processes, nginx used {served}"


async def test_a_second_tab_on_other_processes_follows_the_live_reply(cluster: Cluster, alice: User) -> None:
    mark = cluster.access_mark()
    resp = await alice.post(cluster.front, "watch me from two more tabs")
    first = await read_until(resp, lambda ev: len(ev) >= 1)
    message_id = first[0].data["messageId"]
    tabs = [await alice.events(cluster.front, message_id) for _ in range(2)]  # round-robin: the two others
    assert all(tab.status == 200 for tab in tabs)
    origin = first + parse_sse(await resp.read())[0]
    for tab in tabs:
        events = parse_sse(await tab.read())[0]
        assert [(e.id, e.name, e.data) for e in events] == [(e.id, e.name, e.data) for e in origin]
    assert_reached_different_processes(cluster, mark, "/api/chat/stream", 3)


async def test_a_cancel_sent_to_another_process_ends_the_reply_within_a_second(cluster: Cluster, alice: User) -> None:
    mark = cluster.access_mark()
    resp = await alice.post(cluster.front, "cancel me from elsewhere")
    seen = await read_until(resp, lambda ev: sum(e.name == "delta" for e in ev) >= 3)
    message_id, chat_id = seen[0].data["messageId"], seen[0].data["chatId"]
    asked = time.monotonic()
    async with alice.http.post(f"{cluster.front}/api/chat/streams/{message_id}/cancel", headers=alice.headers) as c:
        assert c.status == 202
    rest = parse_sse(await resp.read())[0]
    assert time.monotonic() - asked < 1.0
    assert rest[-1].name == "error" and rest[-1].data["code"] == "cancelled"
    events = seen + rest
    assert [e.id for e in events] == list(range(1, len(events) + 1))
    stored = await alice.message(cluster.front, chat_id, message_id)
    assert stored["status"] == "cancelled" and stored["content"] == text_of(events)
    assert_reached_different_processes(cluster, mark, "/api/chat/stream", 2)


async def test_an_idempotent_retry_through_another_process_joins_then_replays(cluster: Cluster, alice: User) -> None:
    key = {"Idempotency-Key": f"retry-{alice.id}"}
    mark = cluster.access_mark()
    resp = await alice.post(cluster.front, "asked once", headers=key)
    first = await read_until(resp, lambda ev: len(ev) >= 2)
    joined = await alice.post(cluster.front, "asked once", headers=key)
    assert joined.status == 200 and joined.headers["Idempotent-Replayed"] == "true"
    joined_events = parse_sse(await joined.read())[0]
    original = first + parse_sse(await resp.read())[0]
    assert [(e.id, e.data) for e in joined_events] == [(e.id, e.data) for e in original]
    replayed = await alice.stream(cluster.front, "asked once", headers=key)
    assert [(e.id, e.data) for e in replayed] == [(e.id, e.data) for e in original]
    assert_reached_different_processes(cluster, mark, "/api/chat/stream", 3)
    other = await alice.post(cluster.front, "asked twice", headers=key)
    assert other.status == 422 and (await other.json())["error"]["code"] == "idempotency_key_reused"
    assert len(await alice.assistant_messages(cluster.front, original[0].data["chatId"])) == 1


async def test_a_double_send_through_two_processes_is_one_generation(cluster: Cluster, alice: User) -> None:
    async with alice.http.post(f"{cluster.front}/api/chats", json={}, headers=alice.headers) as made:
        chat_id = (await made.json())["chat"]["id"]
    mark = cluster.access_mark()
    one, two = await asyncio.gather(
        alice.stream(cluster.front, "the same words", chatId=chat_id),
        alice.stream(cluster.front, "the same words", chatId=chat_id),
    )
    assert_reached_different_processes(cluster, mark, "/api/chat/stream", 2)
    assert one[0].data["messageId"] == two[0].data["messageId"]
    assert [(e.id, e.data) for e in one] == [(e.id, e.data) for e in two] and one[-1].name == "done"
    assert len(await alice.assistant_messages(cluster.front, chat_id)) == 1


async def test_ids_of_others_and_bad_input_are_refused_by_every_process(
    cluster: Cluster, alice: User, http: aiohttp.ClientSession
) -> None:
    bob = await sign_up(http, cluster.front, f"bob{next(_users)}@example.com")
    resp = await alice.post(cluster.base(0), "private to alice")
    first = await read_until(resp, lambda ev: len(ev) >= 2)
    message_id = first[0].data["messageId"]
    for i in range(3):
        status, events = await bob.resume(cluster.base(i), message_id, 0)
        assert status == 404 and events == []
        async with http.post(f"{cluster.base(i)}/api/chat/streams/{message_id}/cancel", headers=bob.headers) as c:
            assert c.status == 404
        assert (await alice.resume(cluster.base(i), "no-such-message-id", 0))[0] == 404
        bad = await alice.http.get(f"{cluster.base(i)}/api/chat/streams/{message_id}/events",
                                   headers={**alice.headers, "Last-Event-ID": "seven"})
        assert bad.status == 400 and (await bad.json())["error"]["code"] == "invalid_request"
        idem = await bob.post(cluster.base(i), "private to alice", headers={"Idempotency-Key": message_id})
        if idem.status == 200:  # bob's own key space: a reply of his own, never alice's
            assert parse_sse(await idem.read())[0][0].data["messageId"] != message_id
    rest = parse_sse(await resp.read())[0]
    assert rest[-1].name == "done"


async def test_retention_shorter_than_the_reply_sends_a_snapshot(
    redis: RedisServer, make_cluster: MakeCluster, http: aiohttp.ClientSession
) -> None:
    cluster = make_cluster(redis, 2, nginx=False, replay_stream_maxlen="10", demo_reply_words="400",
                           demo_tokens_per_s="400")
    alice = await sign_up(http, cluster.base(0), "alice@example.com")
    resp = await alice.post(cluster.base(0), "a long reply that retention cannot hold")
    early = await read_until(resp, lambda ev: len(ev) >= 3)
    message_id = early[0].data["messageId"]
    middle = await read_until(resp, lambda ev: len(ev) >= 300)  # the stream has dropped its first entries now
    late = await alice.events(cluster.base(1), message_id, early[-1].id)
    late_events = parse_sse(await late.read())[0]
    origin = early + middle + parse_sse(await resp.read())[0]
    snapshot = late_events[0]
    assert snapshot.name == "snapshot" and snapshot.data["historyLost"] is True
    assert snapshot.data["status"] == "streaming" and snapshot.id is not None and snapshot.id > early[-1].id
    assert snapshot.data["content"] == text_of([e for e in origin if e.id is not None and e.id <= snapshot.id])
    assert [a["agent"] for a in snapshot.data["agents"]][:2] == ["planner", "researcher"]
    assert "".join(a["text"] for a in snapshot.data["agents"]) == snapshot.data["content"]
    after = [e.id for e in late_events[1:]]
    assert after == list(range(snapshot.id + 1, origin[-1].id + 1))  # live from there on, nothing skipped
    assert late_events[-1].name == "done" and text_of(late_events) == origin[-1].data["content"]
    # Finished and still retained: the same from the stream, never a bare `done` as if nothing was missed.
    status, replay = await alice.resume(cluster.base(1), message_id, early[-1].id)
    assert status == 200 and replay[0].name == "snapshot" and replay[-1].name == "done"
    assert text_of(replay) == origin[-1].data["content"]


async def test_redis_killed_and_restarted_mid_reply(
    redis: RedisServer, make_cluster: MakeCluster, http: aiohttp.ClientSession
) -> None:
    cluster = make_cluster(redis, 2, nginx=False, demo_reply_words="150", demo_tokens_per_s="40",
                           rate_limits="default=6000/min/1000")
    alice = await sign_up(http, cluster.base(0), "alice@example.com")
    resp = await alice.post(cluster.base(0), "keep going while redis is away")
    seen = await read_until(resp, lambda ev: len(ev) >= 3)
    message_id, chat_id = seen[0].data["messageId"], seen[0].data["chatId"]
    tab = await alice.events(cluster.base(1), message_id, 0)
    tab_events = await read_until(tab, lambda ev: len(ev) >= 3)
    redis.stop()
    killed = time.monotonic()
    tab_events += parse_sse(await tab.read())[0]
    assert time.monotonic() - killed < 5, "a reader elsewhere must fail fast, not hang"
    failure = tab_events[-1]
    assert failure.name == "error" and failure.id is None and failure.data["code"] == "backing_unavailable"
    assert failure.data["retryAfter"] > 0
    during = await alice.events(cluster.base(1), message_id, tab_events[-2].id)
    assert during.status == 200
    assert parse_sse(await during.read())[0][-1].data["code"] == "backing_unavailable"  # never 204, never a hang
    for i in range(2):  # a request on each process meets the outage: limits fall back, /ready says degraded
        async with http.get(f"{cluster.base(i)}/api/chats", headers=alice.headers) as listed:
            assert listed.status == 200
        async with http.get(f"{cluster.base(i)}/ready") as r:
            assert r.status == 503 and (await r.json())["checks"]["rateLimits"].startswith("degraded")
    await asyncio.sleep(0.5)
    redis.start()
    origin = seen + parse_sse(await resp.read())[0]  # the producer never stopped
    assert origin[-1].name == "done" and [e.id for e in origin] == list(range(1, len(origin) + 1))
    deadline = time.monotonic() + 5  # no request but /ready itself: the processes notice by themselves
    ready = {0: 503, 1: 503}
    while time.monotonic() < deadline and set(ready.values()) != {200}:
        await asyncio.sleep(0.25)
        for i in ready:
            async with http.get(f"{cluster.base(i)}/ready") as r:
                ready[i] = r.status
    assert set(ready.values()) == {200}
    last_seen = max(e.id for e in tab_events if e.id is not None)
    for _ in range(50):  # the producer resends the reply to the new Redis; then the tab catches up exactly
        status, rest = await alice.resume(cluster.base(1), message_id, last_seen)
        assert status == 200 and rest, "never a 204 for a reply the client has not seen end"
        if rest[0].name == "snapshot":  # before the resend: rebuilt from the store, and said so
            assert rest[0].data["historyLost"] and text_of(rest) == origin[-1].data["content"]
        elif rest[0].name != "error":
            break
        await asyncio.sleep(0.1)
    caught_up = [e for e in tab_events if e.id is not None] + rest
    assert [(e.id, e.data) for e in caught_up] == [(e.id, e.data) for e in origin]
    stored = await alice.message(cluster.base(1), chat_id, message_id)
    assert stored["status"] == "complete" and stored["content"] == origin[-1].data["content"]


async def test_a_process_killed_mid_reply_is_reported_interrupted(
    redis: RedisServer, make_cluster: MakeCluster, http: aiohttp.ClientSession
) -> None:
    cluster = make_cluster(redis, 3, nginx=False, demo_reply_words="200", demo_tokens_per_s="30")
    alice = await sign_up(http, cluster.base(0), "alice@example.com")
    resp = await alice.post(cluster.base(0), "this process will die")
    seen = await read_until(resp, lambda ev: sum(e.name == "delta" for e in ev) >= 40)  # past a checkpoint
    message_id, chat_id = seen[0].data["messageId"], seen[0].data["chatId"]
    tab = await alice.events(cluster.base(1), message_id, 0)
    tab_events = await read_until(tab, lambda ev: len(ev) >= 3)
    cluster.kill(0)
    killed = time.monotonic()
    tab_events += parse_sse(await tab.read())[0]
    waited = time.monotonic() - killed
    assert tab_events[-1].name == "error" and tab_events[-1].data["code"] == "interrupted"
    assert waited <= 3 + 1.5, f"the bound is GIMA_REPLY_OWNER_TIMEOUT_S=3, took {waited:.1f} s"
    assert_no_gap_or_repeat(tab_events)
    stored = await alice.message(cluster.base(2), chat_id, message_id)
    assert stored["status"] == "error" and stored["finishReason"] == "interrupted"
    assert stored["content"] and text_of(tab_events).startswith(stored["content"])
    status, tail = await alice.resume(cluster.base(2), message_id, seen[-1].id)  # the killed process's client
    assert status == 200 and tail[-1].data["code"] == "interrupted"
    assert (await alice.resume(cluster.base(2), message_id, tail[-1].id))[0] == 204  # saw the end: nothing more


async def test_a_single_process_restarted_after_sigkill_repairs_its_replies(
    make_cluster: MakeCluster, http: aiohttp.ClientSession
) -> None:
    cluster = make_cluster(None, 1, nginx=False, demo_reply_words="200", demo_tokens_per_s="30")
    alice = await sign_up(http, cluster.base(0), "alice@example.com")
    resp = await alice.post(cluster.base(0), "the only process will die")
    seen = await read_until(resp, lambda ev: sum(e.name == "delta" for e in ev) >= 40)
    message_id, chat_id = seen[0].data["messageId"], seen[0].data["chatId"]
    cluster.restart(0)
    stored = await alice.message(cluster.base(0), chat_id, message_id)
    assert stored["status"] == "error" and stored["finishReason"] == "interrupted" and stored["content"]
    assert one_begins_the_other(text_of(seen), stored["content"])  # the last checkpoint: a little behind or ahead
    status, tail = await alice.resume(cluster.base(0), message_id, seen[-1].id)
    assert status == 200 and [e.name for e in tail] == ["snapshot", "error"]
    assert tail[-1].data["code"] == "interrupted"
    assert (await alice.resume(cluster.base(0), message_id, tail[-1].id))[0] == 204


async def test_a_restarted_process_repairs_its_own_orphans_with_nobody_reading(
    redis: RedisServer, make_cluster: MakeCluster, http: aiohttp.ClientSession
) -> None:
    cluster = make_cluster(redis, 1, nginx=False, demo_reply_words="200", demo_tokens_per_s="30")
    alice = await sign_up(http, cluster.base(0), "alice@example.com")
    resp = await alice.post(cluster.base(0), "nobody will read this again")
    seen = await read_until(resp, lambda ev: sum(e.name == "delta" for e in ev) >= 40)
    message_id, chat_id = seen[0].data["messageId"], seen[0].data["chatId"]
    cluster.restart(0)  # its old lease is still running at start-up, so the first sweep cannot judge it
    restarted = time.monotonic()
    stored = await alice.message(cluster.base(0), chat_id, message_id)
    while stored["status"] == "streaming" and time.monotonic() - restarted < 3 * 1.2 + 3:
        await asyncio.sleep(0.2)
        stored = await alice.message(cluster.base(0), chat_id, message_id)
    assert stored["status"] == "error" and stored["finishReason"] == "interrupted"
    assert stored["content"] and one_begins_the_other(text_of(seen), stored["content"])  # what Redis had


@pytest.fixture(scope="module")
def js_clients() -> Path:
    return install_js_clients()


async def test_the_ai_sdk_resumes_and_stops_through_another_process(
    make_cluster: MakeCluster, cluster_redis: RedisServer, http: aiohttp.ClientSession, js_clients: Path
) -> None:
    """The AI SDK's own client: it sends to process 0 and reconnects (then stops) through process 1."""
    cluster = make_cluster(cluster_redis, 2, demo_tokens_per_s="30", demo_reply_words="200")
    user = await sign_up(http, cluster.base(0), "ai-sdk@example.com")
    seen = await run_node("ai_sdk_client.mjs", cluster.base(0), user.token, "cut-and-resume", "far-chat",
                          RESUME_BASE=cluster.base(1))
    assert seen["types"][0] == "start" and seen["text"].startswith(seen["before"])
    stopped = await run_node("ai_sdk_client.mjs", cluster.base(0), user.token, "stop", "far-chat-2",
                             RESUME_BASE=cluster.base(1))
    assert stopped["types"][-2:] == ["message-metadata", "abort"] and stopped["metadata"]["upstreamClosed"] is True
    [resumed] = await user.assistant_messages(cluster.base(1), stored_chat_id(user.id, "far-chat"))
    assert resumed["status"] == "complete" and resumed["content"] == seen["text"]
    [cancelled] = await user.assistant_messages(cluster.base(1), stored_chat_id(user.id, "far-chat-2"))
    assert cancelled["status"] == "cancelled" and cancelled["content"] == stopped["text"]
