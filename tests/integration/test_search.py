"""GET /api/search: the caller's own finished messages, ranked, with highlighted snippets and a cursor; FTS
syntax is taken literally; the index follows writes and deletes and is built for a database made before it."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from pathlib import Path
from typing import Any

import pytest

from gima_server import appkeys

from ..conftest import Api, MakeClient, quick_user


async def _search(user: Api, q: str, **params: str) -> tuple[int, Any]:
    resp = await user.client.get("/api/search", params={"q": q, **params}, headers=user.headers)
    return resp.status, await resp.json()


async def test_search_finds_own_messages_ranked_with_highlights(make_client: MakeClient) -> None:
    client = await make_client(demo_reply_words=30)
    alice, bob = await quick_user(client, "alice@example.com"), await quick_user(client, "bob@example.com")
    await alice.stream("How do lighthouses work in fog?")
    await alice.stream("Tell me about harbours")
    await bob.stream("bob's lighthouses are secret")
    status, body = await _search(alice, "lighthouses")
    assert status == 200
    roles = {r["role"] for r in body["results"]}
    assert roles == {"user", "assistant"}  # the question and the demo's reply both mention it
    assert all("secret" not in str(r) for r in body["results"])  # never another user's messages
    first = body["results"][0]
    assert first["chatTitle"] and any(p["match"] and p["text"].lower() == "lighthouses" for p in first["snippet"])
    status, none = await _search(bob, "harbours")
    assert status == 200 and none["results"] == []


async def test_the_index_follows_replies_and_deletes(make_client: MakeClient) -> None:
    client = await make_client(demo_reply_words=30)
    alice = await quick_user(client, "alice@example.com")
    events, _ = await alice.stream("zeppelins over the sea")
    assert len((await _search(alice, "zeppelins"))[1]["results"]) >= 2  # the question and the finished reply
    chat_id = events[0].data["chatId"]
    assert (await client.delete(f"/api/chats/{chat_id}", headers=alice.headers)).status == 204
    assert (await _search(alice, "zeppelins"))[1]["results"] == []


@pytest.mark.parametrize("q", ['"unbalanced', "NEAR(a b)", "a* OR b", "-x", "col:lighthouse", "^start", "AND",
                               "(((", "lighthouse's fog!", "ümlaut café"])
async def test_fts_syntax_is_searched_literally_never_a_500(make_client: MakeClient, q: str) -> None:
    client = await make_client()
    alice = await quick_user(client, "alice@example.com")
    await alice.stream("lighthouse fog and café ümlaut")
    status, body = await _search(alice, q)
    assert status in (200, 400), body
    if status == 400:
        assert body["error"]["code"] == "invalid_request"


@pytest.mark.parametrize(("params", "why"), [({"q": ""}, "empty"), ({"q": "   "}, "empty"), ({"q": "x" * 201}, "200"),
                                            ({"q": "?!"}, "word"), ({"q": "a", "limit": "0"}, "limit"),
                                            ({"q": "a", "limit": "x"}, "limit"), ({"q": "a", "cursor": "-1"}, "cursor")])
async def test_bad_queries_are_400(make_client: MakeClient, params: dict[str, str], why: str) -> None:
    client = await make_client()
    alice = await quick_user(client, "alice@example.com")
    resp = await client.get("/api/search", params=params, headers=alice.headers)
    assert resp.status == 400 and why in (await resp.json())["error"]["message"]
    assert (await client.get("/api/search", params={"q": "a"})).status == 401


async def test_results_page_with_a_cursor(make_client: MakeClient) -> None:
    client = await make_client(demo_reply_words=10)
    alice = await quick_user(client, "alice@example.com")
    for n in range(5):
        await alice.stream(f"walrus number {n}")
    seen: list[str] = []
    cursor: str | None = None
    while True:
        _, body = await _search(alice, "walrus", limit="2", **({"cursor": cursor} if cursor else {}))
        seen += [r["messageId"] for r in body["results"]]
        cursor = body["nextCursor"]
        if cursor is None:
            break
    assert len(seen) == len(set(seen)) >= 5


async def test_a_database_made_before_search_is_indexed_at_start(make_client: MakeClient, tmp_path: Path) -> None:
    client = await make_client(demo_reply_words=10)
    alice = await quick_user(client, "alice@example.com")
    await alice.stream("narwhals before the index existed")
    path = client.app[appkeys.SETTINGS].sqlite_path
    await client.close()
    with sqlite3.connect(path) as conn:  # as an earlier version left it: no search index at all
        for name in ("messages_fts_insert", "messages_fts_update", "messages_fts_delete"):
            conn.execute(f"DROP TRIGGER {name}")
        conn.execute("DROP TABLE messages_fts")
        conn.execute("DROP TABLE messages_fts_pending")
        conn.execute("PRAGMA user_version = 0")  # nor numbered schema steps
    again = await make_client(demo_reply_words=10)
    same = Api(again, alice.token, alice.user)
    status, body = await _search(same, "narwhals")
    assert status == 200 and len(body["results"]) >= 1


def test_two_processes_making_the_schema_at_once_both_start(tmp_path: Path) -> None:
    """Processes starting on one new file at once: each step is applied once, under the write lock, and each
    process starts (a cluster test once failed to start with "table messages_fts_pending already exists")."""
    from gima_server.store import sqlite_schema

    for attempt in range(10):
        path = tmp_path / f"race{attempt}.sqlite3"
        barrier = threading.Barrier(3)
        applied: list[int] = []

        def start(path: Path, barrier: threading.Barrier, applied: list[int]) -> None:
            conn = sqlite3.connect(path, isolation_level=None, timeout=5.0)
            barrier.wait()
            applied.extend(step.number for step in sqlite_schema.upgrade(conn, str(path)))
            conn.close()

        threads = [threading.Thread(target=start, args=(path, barrier, applied)) for _ in range(3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sorted(applied) == [step.number for step in sqlite_schema.STEPS]  # each step once, by one of them
        with sqlite3.connect(path) as conn:
            assert sqlite_schema.version(conn) == sqlite_schema.LATEST
            triggers = conn.execute("SELECT COUNT(*) FROM sqlite_master WHERE type = 'trigger' AND name LIKE 'messages_fts_%'")
            assert triggers.fetchone()[0] == 3


async def test_finished_messages_are_indexed_in_the_background_and_stay_consistent(make_client: MakeClient) -> None:
    """A reply's last write only queues it; the index catches up off the busy moments, and a message changed or
    deleted while queued or after indexing leaves no stale words behind (FTS5's external-content rules)."""
    client = await make_client(demo_reply_words=20)
    alice = await quick_user(client, "alice@example.com")
    events, _ = await alice.stream("quokkas are happy")
    store: Any = client.app[appkeys.STORE]
    sqlite = store._inner
    pending = await sqlite._read(lambda c: c.execute("SELECT COUNT(*) FROM messages_fts_pending").fetchone()[0])
    assert pending >= 2  # queued, not yet indexed
    for _ in range(40):  # the app's indexer (every second, when not under pressure)
        pending = await sqlite._read(lambda c: c.execute("SELECT COUNT(*) FROM messages_fts_pending").fetchone()[0])
        if pending == 0:
            break
        await asyncio.sleep(0.1)
    assert pending == 0
    reply_id = events[0].data["messageId"]
    await sqlite._run(lambda c: c.execute("UPDATE messages SET content = 'now about wombats' WHERE id = ?", (reply_id,)))
    assert [r["messageId"] for r in (await _search(alice, "wombats"))[1]["results"]] == [reply_id]
    assert reply_id not in [r["messageId"] for r in (await _search(alice, "quokkas"))[1]["results"]]
    # FTS5 checks its index against the messages and raises (SQLITE_CORRUPT_VTAB) if they disagree.
    await sqlite._run(lambda c: c.execute("INSERT INTO messages_fts(messages_fts, rank) VALUES ('integrity-check', 1)"))
