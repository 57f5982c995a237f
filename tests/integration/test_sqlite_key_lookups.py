"""Lookups by key are read on the loop thread (ADR 10); one that finds the file locked goes to the reader thread."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path
from typing import Callable, TypeVar

from gima_server.store.sqlite import SqliteStore

T = TypeVar("T")


async def test_a_lookup_is_answered_without_a_thread(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "gima.db")
    await store.open()
    try:
        user = await store.create_user("a@example.com", "hash", "A", ["user"])
        session = await store.create_session(user.id, 3600)
        trips: list[object] = []

        async def no_thread(fn: Callable[[sqlite3.Connection], T]) -> T:  # a lookup must not need the reader thread
            trips.append(fn)
            raise AssertionError("a lookup by key went to the reader thread")

        store._read = no_thread  # type: ignore[method-assign]
        assert (await store.get_user(user.id)) == user
        found = await store.get_session(session.id)
        assert found is not None and found.user_id == user.id
        assert await store.message_owner("0" * 32) is None
        assert trips == []
    finally:
        await store.close()


class _LockedOnce:
    """The loop-thread connection as SQLite answers it while another process holds the file (a checkpoint or
    a schema change): 'database is locked' at once, since it never waits. WAL readers are hard to lock out for
    real from a test, so the error is injected here; the fallback that follows is the real reader thread."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn
        self.refused = 0

    def execute(self, sql: str, args: tuple[object, ...] = ()) -> sqlite3.Cursor:
        if self.refused == 0:
            self.refused += 1
            raise sqlite3.OperationalError("database is locked")
        return self._conn.execute(sql, args)

    def close(self) -> None:
        self._conn.close()


async def test_a_locked_file_sends_the_lookup_to_the_reader_thread(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "gima.db")
    await store.open()
    try:
        user = await store.create_user("b@example.com", "hash", "B", ["user"])
        assert store._key_conn is not None
        locked = _LockedOnce(store._key_conn)
        store._key_conn = locked  # type: ignore[assignment]
        threads: list[str] = []
        read = store._read

        async def counted_read(fn: Callable[[sqlite3.Connection], T]) -> T:
            def where(conn: sqlite3.Connection) -> T:
                threads.append(threading.current_thread().name)
                return fn(conn)

            return await read(where)

        store._read = counted_read  # type: ignore[method-assign]
        assert (await store.get_user(user.id)) == user
        assert locked.refused == 1 and len(threads) == 1 and threads[0].startswith("gima-sqlite-read")
        assert (await store.get_user(user.id)) == user and len(threads) == 1  # the next one: on the loop again
    finally:
        await store.close()
