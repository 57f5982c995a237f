"""The server on PostgreSQL (GIMA_STORE_URL=postgresql://…), through a real server and client, and the store's
faults made for real: a read-only server (what a failover's old primary or a replica answers), connections
ended by the server, and the server stopped while a reply streams. The contract suite (tests/contract) runs
every store call on PostgreSQL too."""

from __future__ import annotations

import asyncio
from typing import Any, AsyncIterator, Iterator

import asyncpg
import pytest

from gima_server import appkeys
from gima_server.store import postgres_schema
from gima_server.store.base import Exchange
from gima_server.store.postgres import PostgresStore

from ..conftest import MakeClient, quick_user, same_origin
from ..postgres_server import PostgresServer, fresh_database
from ..redis_server import free_port
from ..sse import parse_sse, read_until


@pytest.fixture
def own_server() -> Iterator[PostgresServer]:
    """A cluster of this test's own: these tests stop it or make it read-only."""
    server = PostgresServer(free_port(), crash_safe=True)
    server.start()
    yield server
    server.stop()


@pytest.fixture
async def own_url(own_server: PostgresServer) -> AsyncIterator[str]:
    yield await fresh_database(own_server.base_url)


async def _admin(url: str, sql: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


async def _expect_503(resp: Any) -> None:
    assert resp.status == 503, await resp.text()
    body = await resp.json()
    assert body["error"]["code"] == "store_unavailable" and int(resp.headers["Retry-After"]) >= 1


async def test_sign_up_replies_history_and_search_on_postgres(postgres_url: str, make_client: MakeClient) -> None:
    client = await make_client(store_url=postgres_url, demo_reply_words=20)
    assert isinstance(client.app[appkeys.STORE]._inner, PostgresStore)
    resp = await client.post("/api/auth/signup", json={"email": "alice@example.com", "password": "a good password"},
                             headers=same_origin(client))
    assert resp.status == 201, await resp.text()
    token = (await resp.json())["accessToken"]
    headers = {"Authorization": f"Bearer {token}"}
    resp = await client.post("/api/chat/stream", json={"content": "lighthouses in the café"}, headers=headers)
    events, _ = parse_sse(await resp.read())
    assert events[-1].name == "done"
    chat_id = events[0].data["chatId"]
    messages = (await (await client.get(f"/api/chats/{chat_id}/messages", headers=headers)).json())["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant"]
    assert messages[1]["status"] == "complete" and messages[1]["content"] == events[-1].data["content"]
    found = await (await client.get("/api/search", params={"q": "CAFE lighthouses"}, headers=headers)).json()
    assert [r["messageId"] for r in found["results"]] == [messages[0]["id"]]
    assert any(part["match"] for part in found["results"][0]["snippet"])
    assert (await client.get("/ready")).status == 200
    assert (await client.post("/api/auth/logout", headers={**headers, **same_origin(client)})).status in (200, 204)
    assert (await client.get("/api/chats", headers=headers)).status == 401  # the session (joined with its user) ended


async def test_a_read_only_server_is_a_clear_503_reads_still_work_and_it_recovers(
    own_url: str, make_client: MakeClient
) -> None:
    client = await make_client(store_url=own_url, store_retry_s=0.5)
    alice = await quick_user(client, "alice@example.com")
    events, _ = await alice.stream("kept before the fault")
    await _admin(own_url, "ALTER SYSTEM SET default_transaction_read_only = on")
    await _admin(own_url, "SELECT pg_reload_conf()")
    await asyncio.sleep(0.3)  # every backend reads the new default on its next command
    await _expect_503(await client.post("/api/chats", json={"title": "t"}, headers=alice.headers))
    assert (await client.get("/api/chats", headers=alice.headers)).status == 200  # reads are not affected
    resp = await client.post("/api/chat/stream", json={"content": "during the fault"}, headers=alice.headers)
    failed, _ = parse_sse(await resp.read())
    assert failed[-1].name == "error" and failed[-1].data["code"] == "store_unavailable"
    await _admin(own_url, "ALTER SYSTEM RESET default_transaction_read_only")
    await _admin(own_url, "SELECT pg_reload_conf()")
    await asyncio.sleep(0.3)
    after, _ = await alice.stream("after the fault")
    assert after[-1].name == "done"
    chats = (await (await client.get("/api/chats", headers=alice.headers)).json())["chats"]
    stored = {m["content"] for chat in chats for m in await alice.messages(chat["id"])}
    assert {"kept before the fault", events[-1].data["content"], "after the fault"} <= stored
    assert "during the fault" not in stored  # refused as a whole, not half-written


async def _terminate_when_waiting(admin: asyncpg.Connection) -> None:
    """End the backend that waits for the admin's lock: a connection lost in the middle of a statement."""
    for _ in range(200):
        pids = await admin.fetch("SELECT pid FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                                 " AND datname = current_database()")
        if pids:
            await admin.execute("SELECT pg_terminate_backend($1)", pids[0]["pid"])
            return
        await asyncio.sleep(0.02)
    raise AssertionError("no statement came to wait for the lock")


async def test_a_connection_lost_mid_write_is_one_clear_503_nothing_written_and_a_read_is_retried(
    postgres_url: str, make_client: MakeClient
) -> None:
    client = await make_client(store_url=postgres_url, store_retry_s=0.5)
    alice = await quick_user(client, "alice@example.com")
    await alice.stream("before")
    admin = await asyncpg.connect(postgres_url)
    try:
        async with admin.transaction():
            await admin.execute("LOCK TABLE chats IN EXCLUSIVE MODE")  # inserts wait, reads do not
            write = asyncio.ensure_future(client.post("/api/chats", json={"title": "lost"}, headers=alice.headers))
            await _terminate_when_waiting(admin)
            await _expect_503(await write)  # a write whose connection died is not silently repeated
        async with admin.transaction():
            await admin.execute("LOCK TABLE chats IN ACCESS EXCLUSIVE MODE")  # now reads wait too
            read = asyncio.ensure_future(client.get("/api/chats", headers=alice.headers))
            await _terminate_when_waiting(admin)
            await asyncio.sleep(0.2)  # the retry waits for the lock as well, until the admin lets go
        resp = await read
        assert resp.status == 200, await resp.text()  # retried on a new connection: the reader never knew
        titles = [c["title"] for c in (await resp.json())["chats"]]
        assert "lost" not in titles and len(titles) == 1
    finally:
        await admin.close()
    assert (await client.post("/api/chats", json={"title": "next"}, headers=alice.headers)).status == 201


async def test_connections_the_server_ends_while_idle_are_replaced_unseen(postgres_url: str, make_client: MakeClient) -> None:
    client = await make_client(store_url=postgres_url, postgres_pool_size=2)
    alice = await quick_user(client, "alice@example.com")
    ended = ("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database()"
             " AND pid <> pg_backend_pid()")
    await _admin(postgres_url, ended)
    await asyncio.sleep(0.1)
    assert (await client.post("/api/chats", json={"title": "after"}, headers=alice.headers)).status == 201
    events, _ = await alice.stream("and a reply")
    assert events[-1].name == "done"


async def test_the_server_stopped_mid_reply_is_waited_out_and_the_reply_is_stored_whole(
    own_server: PostgresServer, own_url: str, make_client: MakeClient
) -> None:
    client = await make_client(store_url=own_url, demo_tokens_per_s=60, demo_reply_words=60, checkpoint_every=5,
                               checkpoint_min_s=0, store_retry_s=20, postgres_timeout_s=2)
    alice = await quick_user(client, "alice@example.com")
    resp = await client.post("/api/chat/stream", json={"content": "write through the outage"}, headers=alice.headers)
    seen = await read_until(resp, lambda events: sum(e.name == "delta" for e in events) >= 3)
    own_server.stop_server()
    await _expect_503(await client.post("/api/chats", json={"title": "t"}, headers=alice.headers))
    await asyncio.sleep(1.0)  # the reply's checkpoints and its final write fail meanwhile
    own_server.start_server()
    rest, _ = parse_sse(await resp.read())
    events = seen + rest
    assert events[-1].name == "done", events[-1]
    stored = (await alice.messages(seen[0].data["chatId"]))[-1]
    assert stored["status"] == "complete" and stored["content"] == events[-1].data["content"]


async def test_processes_opening_a_new_database_at_once_apply_each_step_once(postgres_url: str) -> None:
    stores = [PostgresStore(postgres_url) for _ in range(6)]
    await asyncio.gather(*(store.open() for store in stores))
    try:
        assert await stores[0].schema_version() == postgres_schema.LATEST
        user = await stores[1].create_user("u@example.com", "hash", "U", ("user",))
        assert await stores[5].get_user(user.id) == user
    finally:
        await asyncio.gather(*(store.close() for store in stores))


async def test_a_database_of_an_older_schema_is_upgraded_in_place_and_its_messages_become_searchable(
    postgres_url: str,
) -> None:
    conn = await asyncpg.connect(postgres_url)
    try:
        assert [s.number for s in await postgres_schema.upgrade(conn, "test", to=1)] == [1]  # what an older build made
        await conn.execute("INSERT INTO users VALUES ('u1', 'u@example.com', 'U', 'hash', ARRAY['user'], 1.0)")
        await conn.execute("INSERT INTO chats VALUES ('c1', 'u1', 'old chat', 1.0, 1.0)")
        await conn.execute("INSERT INTO messages (id, chat_id, user_id, role, content, status, seq, created_at)"
                           " VALUES ('m1', 'c1', 'u1', 'user', 'Crème brûlée recipes', 'complete', 1, 1.0)")
    finally:
        await conn.close()
    store = PostgresStore(postgres_url)
    assert [number for number, _ in await store.pending_steps()] == list(range(2, postgres_schema.LATEST + 1))
    await store.open()
    try:
        assert await store.schema_version() == postgres_schema.LATEST
        assert [h.message_id for h in await store.search_messages("u1", ["creme", "brulee"], 10, 0)] == ["m1"]
        await store.begin_exchange(Exchange("u1", "c1", None, "m2", "m3", "more", 2.0))
        assert [m.id for m in await store.list_messages("u1", "c1")] == ["m1", "m2", "m3"]
    finally:
        await store.close()



async def test_finished_messages_wait_for_the_index_off_the_replys_path_and_a_search_sees_them(
    postgres_url: str,
) -> None:
    store = PostgresStore(postgres_url)
    await store.open()
    try:
        user = await store.create_user("u@example.com", "hash", "U", ("user",))
        await store.begin_exchange(Exchange(user.id, "c1", "t", "u1", "a1", "Crème of the harbour", 1.0))
        assert await store.finish_reply("a1", "harbour lights", "complete", "stop", 3)
        async with store._conn() as conn:  # neither the exchange nor the final write tokenized anything
            assert await conn.fetchval("SELECT COUNT(*) FROM messages WHERE search IS NULL") == 2
        assert await store.index_pending(1) == 1 and await store.index_pending(10) == 1  # in batches, off the path
        assert await store.index_pending(10) == 0
        await store.begin_exchange(Exchange(user.id, "c1", None, "u2", "a2", "harbour again", 2.0))
        assert await store.finish_reply("a2", "more", "complete", "stop", 2)
        hits = await store.search_messages(user.id, ["harbour"], 10, 0)  # a search indexes what waits first
        assert {h.message_id for h in hits} == {"u1", "a1", "u2"}
        assert [h.message_id for h in await store.search_messages(user.id, ["creme"], 10, 0)] == ["u1"]
    finally:
        await store.close()
