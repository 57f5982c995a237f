"""The history search of the SQLite store: FTS5 over finished messages, indexed in batches (sqlite_schema step 2)."""

from __future__ import annotations

import sqlite3
from typing import Any, Callable, Sequence

from .base import SearchHit
from .sqlite_util import transaction


def _index_pending(conn: sqlite3.Connection, limit: int) -> int:
    """Index up to `limit` queued messages in one transaction; return how many."""
    with transaction(conn):
        ids = [r[0] for r in conn.execute("SELECT id FROM messages_fts_pending ORDER BY id LIMIT ?", (limit,))]
        if not ids:
            return 0
        marks = ",".join("?" * len(ids))
        conn.execute(f"INSERT INTO messages_fts(rowid, content) SELECT rowid, content FROM messages"
                     f" WHERE rowid IN ({marks})", ids)
        conn.execute(f"DELETE FROM messages_fts_pending WHERE id IN ({marks})", ids)
        return len(ids)


class SqliteSearchMixin:
    """The search part of the SQLite store."""

    _run: Callable[..., Any]
    _read: Callable[..., Any]

    async def index_pending(self, limit: int = 500) -> int:
        """Index up to `limit` finished messages waiting for the search index (the app calls it when not busy)."""
        indexed: int = await self._run(lambda c: _index_pending(c, limit))
        return indexed

    async def search_messages(self, user_id: str, terms: Sequence[str], limit: int, offset: int) -> list[SearchHit]:
        while await self.index_pending(2000):  # a search sees every finished message, also those just queued
            pass
        match = " ".join('"' + term.replace('"', '""') + '"' for term in terms)  # each term literal, all required
        rows = await self._read(lambda c: c.execute(
            "SELECT m.id, m.chat_id, m.role, m.created_at, c.title,"
            " snippet(messages_fts, 0, char(2), char(3), '…', 16) AS snip"
            " FROM messages_fts JOIN messages m ON m.rowid = messages_fts.rowid JOIN chats c ON c.id = m.chat_id"
            " WHERE messages_fts MATCH ? AND m.user_id = ? ORDER BY bm25(messages_fts), m.created_at DESC"
            " LIMIT ? OFFSET ?", (match, user_id, limit, offset)).fetchall())
        return [SearchHit(r["id"], r["chat_id"], r["title"], r["role"], r["created_at"], r["snip"]) for r in rows]
