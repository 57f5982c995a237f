"""`gima-server store copy SRC_URL DST_URL`: a SQLite deployment moves to PostgreSQL. What users made through
the real server (a password account, a reply, an API key, a search) works on the destination through the real
server; an interrupted copy (the process killed) goes on with --continue; a non-empty destination is refused."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import asyncpg

from gima_server.store.base import Exchange
from gima_server.store.sqlite import SqliteStore

from ..conftest import MakeClient, log_in, sign_up
from .test_api_keys import as_key, make_key
from .test_cli import _cli, _env

COUNTED = ("users", "sessions", "api_keys", "chats", "messages", "imported_conversations")


def _counts(stdout: str) -> dict[str, tuple[int, int]]:
    """{table: (source, destination)} from the copy's report."""
    found = {}
    for line in stdout.splitlines():
        name, _, rest = line.partition(": source ")
        if rest:
            source, _, destination = rest.partition(", destination ")
            found[name] = (int(source), int(destination.split()[0]))
    return found


async def test_a_sqlite_deployment_copied_to_postgresql_keeps_passwords_keys_history_and_search(
    tmp_path: Path, postgres_url: str, make_client: MakeClient
) -> None:
    sqlite_path = tmp_path / "gima.sqlite3"
    old = await make_client(demo_reply_words=12)
    alice = await sign_up(old, "alice@example.com", "a long password to keep")
    events, _ = await alice.stream("lighthouses of the north")
    key = (await make_key(alice))["key"]
    chat_id = events[0].data["chatId"]
    history = await alice.messages(chat_id)

    result = _cli(tmp_path, "store", "copy", f"sqlite:///{sqlite_path}", postgres_url)
    assert result.returncode == 0, result.stderr
    counts = _counts(result.stdout)
    assert set(counts) == set(COUNTED) and "counts match" in result.stdout
    assert all(source == destination for source, destination in counts.values())
    assert counts["users"][0] == 1 and counts["messages"][0] == 2 and counts["api_keys"][0] == 1

    new = await make_client(store_url=postgres_url)
    again = await log_in(new, "alice@example.com", "a long password to keep")  # the argon2 hash came along
    assert again.user["id"] == alice.user["id"]
    assert await again.messages(chat_id) == history
    resp = await new.get("/api/search", params={"q": "lighthouses"}, headers=again.headers)
    assert resp.status == 200 and len((await resp.json())["results"]) >= 1
    program = as_key(again, key)
    assert (await new.get("/api/chats", headers=program.headers)).status == 200  # the key works on the new store
    later, _ = await again.stream("and one more", chatId=chat_id)
    assert later[-1].name == "done"

    back = tmp_path / "back.sqlite3"  # and the way back, for an operator who tries PostgreSQL and returns
    result = _cli(tmp_path, "store", "copy", postgres_url, f"sqlite:///{back}")
    assert result.returncode == 0 and "counts match" in result.stdout, result.stdout + result.stderr
    assert _counts(result.stdout)["messages"] == (4, 4)


async def test_a_non_empty_destination_is_refused_unless_told_to_continue(tmp_path: Path, postgres_url: str) -> None:
    source = await _filled_sqlite(tmp_path / "source.sqlite3", chats=2, replies=2)
    first = _cli(tmp_path, "store", "copy", source, postgres_url)
    assert first.returncode == 0, first.stderr
    again = _cli(tmp_path, "store", "copy", source, postgres_url)
    assert again.returncode == 2
    lines = again.stderr.strip().splitlines()
    assert len(lines) == 1 and "not empty" in lines[0] and "--continue" in lines[0], again.stderr
    assert _cli(tmp_path, "store", "copy", source, source).returncode == 2  # onto itself
    bad = _cli(tmp_path, "store", "copy", "mysql://x", postgres_url)
    assert bad.returncode == 2 and "source" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1
    done = _cli(tmp_path, "store", "copy", source, postgres_url, "--continue")
    assert done.returncode == 0 and "messages: 0 copied" in done.stdout, done.stdout  # nothing twice


async def test_an_interrupted_copy_goes_on_with_continue_and_nothing_is_copied_twice(
    tmp_path: Path, postgres_url: str
) -> None:
    source = await _filled_sqlite(tmp_path / "source.sqlite3", chats=40, replies=25)  # 2,000 messages
    proc = subprocess.Popen([sys.executable, "-m", "gima_server", "store", "copy", source, postgres_url,
                             "--batch-rows", "1"], env=_env(tmp_path),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    conn = await asyncpg.connect(postgres_url)
    try:
        for _ in range(1000):
            if await conn.fetchval("SELECT to_regclass('messages') IS NOT NULL") and \
                    await conn.fetchval("SELECT COUNT(*) FROM messages") >= 100:
                break
            await asyncio.sleep(0.01)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        partial = await conn.fetchval("SELECT COUNT(*) FROM messages")
        assert 100 <= partial < 2000, partial  # killed half-way, as a lost SSH session or an OOM kill would
    finally:
        await conn.close()
    refused = _cli(tmp_path, "store", "copy", source, postgres_url)
    assert refused.returncode == 2 and "not empty" in refused.stderr
    resumed = _cli(tmp_path, "store", "copy", source, postgres_url, "--continue")
    assert resumed.returncode == 0, resumed.stderr
    assert "counts match" in resumed.stdout and _counts(resumed.stdout)["messages"] == (2000, 2000)
    copied = int(next(line for line in resumed.stdout.splitlines() if line.startswith("messages:")).split()[1])
    assert copied <= 2000 - partial  # it went on from where the destination stood


async def _filled_sqlite(path: Path, chats: int, replies: int) -> str:
    store = SqliteStore(path)
    await store.open()
    try:
        user = await store.create_user("u@example.com", "hash", "U", ("user",))
        for c in range(chats):
            for n in range(replies):
                ex = Exchange(user.id, f"chat{c:03}", "title" if n == 0 else None, f"u{c:03}-{n:03}",
                              f"a{c:03}-{n:03}", f"question {n}", float(c * 100 + n))
                await store.begin_exchange(ex)
                await store.finish_reply(ex.reply_message_id, f"answer {n}", "complete", "stop", 2)
    finally:
        await store.close()
    return f"sqlite:///{path}"
