"""The store's disk full or read-only, for real: SQLite's own SQLITE_FULL (the database may not grow by a page)
and SQLITE_READONLY on the server's writer connection. Requests get a clear 503, reads keep working, a running
reply waits the fault out and is stored whole, and everything recovers by itself."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient

from gima_server import appkeys
from gima_server.store.base import Exchange
from gima_server.store.sqlite import SqliteStore

from ..conftest import MakeClient, quick_user, same_origin
from ..sse import parse_sse, read_until


def _sqlite(client: TestClient) -> SqliteStore:
    store: Any = client.app[appkeys.STORE]
    inner = store._inner
    assert isinstance(inner, SqliteStore)
    return inner


async def _on_writer(client: TestClient, sql: str) -> None:
    await _sqlite(client)._run(lambda conn: conn.execute(sql))


async def disk_full(client: TestClient) -> None:
    """No page more for the database, and its pages' free room taken: the next write that needs room fails."""

    def fill(conn: sqlite3.Connection) -> None:
        conn.execute("CREATE TABLE IF NOT EXISTS filler (x BLOB)")
        conn.execute(f"PRAGMA max_page_count = {conn.execute('PRAGMA page_count').fetchone()[0]}")
        for size in (4096, 512, 64, 8, 1):
            try:
                while True:
                    conn.execute("INSERT INTO filler VALUES (zeroblob(?))", (size,))
            except sqlite3.OperationalError as exc:
                assert "full" in str(exc)

    await _sqlite(client)._run(fill)


async def disk_freed(client: TestClient) -> None:
    await _on_writer(client, "PRAGMA max_page_count = 1073741823")


async def _expect_503(resp: Any) -> None:
    assert resp.status == 503, await resp.text()
    body = await resp.json()
    assert body["error"]["code"] == "store_unavailable" and int(resp.headers["Retry-After"]) >= 1


async def test_a_read_only_store_is_a_clear_503_reads_still_work_and_it_recovers(make_client: MakeClient) -> None:
    client = await make_client(store_retry_s=0.5)
    alice = await quick_user(client, "alice@example.com")
    events, _ = await alice.stream("kept before the fault")
    await _on_writer(client, "PRAGMA query_only = ON")
    await _expect_503(await client.post("/api/chats", json={"title": "t"}, headers=alice.headers))
    await _expect_503(await client.post("/api/auth/signup", headers=same_origin(client),
                                        json={"email": "new@example.com", "password": "a good password"}))
    assert (await client.get("/api/chats", headers=alice.headers)).status == 200  # reads are not affected
    resp = await client.post("/api/chat/stream", json={"content": "during the fault"}, headers=alice.headers)
    failed, _ = parse_sse(await resp.read())
    assert failed[-1].name == "error" and failed[-1].data["code"] == "store_unavailable"
    assert failed[-1].data["retryAfter"] > 0
    await _on_writer(client, "PRAGMA query_only = OFF")  # the operator fixes the mount: no restart
    after, _ = await alice.stream("after the fault")
    assert after[-1].name == "done"
    chats = (await (await client.get("/api/chats", headers=alice.headers)).json())["chats"]
    stored = {m["content"] for chat in chats for m in await alice.messages(chat["id"])}
    assert {"kept before the fault", events[-1].data["content"], "after the fault"} <= stored
    assert "during the fault" not in stored  # refused as a whole, not half-written


async def test_a_store_fault_mid_reply_is_waited_out_and_the_reply_is_stored_whole(make_client: MakeClient) -> None:
    client = await make_client(demo_tokens_per_s=60, demo_reply_words=60, checkpoint_every=5, checkpoint_min_s=0,
                               store_retry_s=20)
    alice = await quick_user(client, "alice@example.com")
    resp = await client.post("/api/chat/stream", json={"content": "write through the fault"}, headers=alice.headers)
    seen = await read_until(resp, lambda events: sum(e.name == "delta" for e in events) >= 3)
    await _on_writer(client, "PRAGMA query_only = ON")
    await asyncio.sleep(1.5)  # the reply's checkpoints and its final write fail meanwhile
    await _on_writer(client, "PRAGMA query_only = OFF")
    rest, _ = parse_sse(await resp.read())
    events = seen + rest
    assert events[-1].name == "done", events[-1]
    stored = (await alice.messages(seen[0].data["chatId"]))[-1]
    assert stored["status"] == "complete" and stored["content"] == events[-1].data["content"]


async def test_a_full_disk_refuses_what_needs_room_and_keeps_everything_before(make_client: MakeClient) -> None:
    """SQLITE_FULL: a message of 30 KB needs new pages, which the full database may not take."""
    client = await make_client(store_retry_s=0.5)
    alice = await quick_user(client, "alice@example.com")
    before, _ = await alice.stream("kept")
    await disk_full(client)
    big = "tide " * 6000
    resp = await client.post("/api/chat/stream", json={"content": big}, headers=alice.headers)
    failed, _ = parse_sse(await resp.read())
    assert failed[-1].name == "error" and failed[-1].data["code"] == "store_unavailable"
    await disk_freed(client)
    after, _ = await alice.stream(big)
    assert after[-1].name == "done"
    assert (await alice.messages(before[0].data["chatId"]))[-1]["content"] == before[-1].data["content"]


async def test_writes_queued_when_the_store_closes_still_land(tmp_path: Path) -> None:
    """Closing the store waits for the grouped writes still queued (ADR 14) before the connection goes: the
    writer task is awaited, not left to the order in which the threads happen to run."""
    store = SqliteStore(tmp_path / "closing.sqlite3")
    await store.open()
    user = await store.create_user("u@example.com", "hash", "U", ("user",))
    await store.begin_exchange(Exchange(user.id, "c1", "title", "u1", "a1", "question", 1.0))
    first = asyncio.ensure_future(store.checkpoint_reply("a1", "first"))
    await asyncio.sleep(0)
    await asyncio.sleep(0)  # the first group is on the writer thread now
    second = asyncio.ensure_future(store.checkpoint_reply("a1", "written at close"))  # queued behind it
    await asyncio.sleep(0)
    await store.close()
    assert await first and await second
    with sqlite3.connect(tmp_path / "closing.sqlite3") as conn:
        assert conn.execute("SELECT content FROM messages WHERE id = 'a1'").fetchone() == ("written at close",)


async def test_a_write_queued_behind_a_group_is_written_while_the_loop_is_busy(tmp_path: Path) -> None:
    """The writer thread goes on to the writes that queued while it wrote, without waiting for a turn of the event
    loop: on a saturated loop (ten thousand replies at once) a turn lasts a second or more, and each reply's end
    waited for its final write that much longer. Here the loop is held still while the second group is due."""
    store = SqliteStore(tmp_path / "busy.sqlite3")
    await store.open()
    gate, second_ran = threading.Event(), threading.Event()
    try:
        def first(conn: sqlite3.Connection) -> None:
            gate.wait(5)

        def second(conn: sqlite3.Connection) -> None:
            second_ran.set()

        writes = [asyncio.ensure_future(store._run_grouped(first))]
        for _ in range(3):  # the first group on the writer thread, waiting at the gate
            await asyncio.sleep(0)
        writes.append(asyncio.ensure_future(store._run_grouped(second)))
        await asyncio.sleep(0)  # queued behind it
        gate.set()
        assert second_ran.wait(5), "the second group waited for the event loop"  # the loop is blocked right here
        await asyncio.gather(*writes)
    finally:
        gate.set()
        await store.close()
