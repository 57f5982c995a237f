"""Semantic search's vectors in the SQLite store (sqlite_schema step 4): one row per message and model."""

from __future__ import annotations

import sqlite3
from typing import Any, Callable, Sequence

from .base import SearchHit

SNIPPET_CHARS = 200


class SqliteVectorsMixin:
    _run: Callable[..., Any]
    _read: Callable[..., Any]

    async def messages_to_embed(self, model: str, limit: int, user_id: str | None = None) -> list[tuple[str, str, str]]:
        only_user = " AND m.user_id = ?" if user_id is not None else ""
        args: tuple[Any, ...] = (model, user_id, limit) if user_id is not None else (model, limit)
        rows = await self._read(lambda c: c.execute(
            "SELECT m.id, m.user_id, m.content FROM messages m WHERE m.status != 'streaming' AND m.content != ''"
            " AND NOT EXISTS (SELECT 1 FROM message_vectors v WHERE v.message_id = m.id AND v.model = ?)"
            f"{only_user} LIMIT ?", args).fetchall())
        return [(r[0], r[1], r[2]) for r in rows]

    async def save_vectors(self, model: str, vectors: Sequence[tuple[str, bytes]]) -> int:
        def write(conn: sqlite3.Connection) -> int:
            before = conn.total_changes
            conn.executemany(
                "INSERT OR IGNORE INTO message_vectors (message_id, model, user_id, vector)"
                " SELECT id, ?, user_id, ? FROM messages WHERE id = ?",
                [(model, blob, message_id) for message_id, blob in vectors])
            return conn.total_changes - before

        changed: int = await self._run(write)
        return changed

    async def user_vectors(self, user_id: str, model: str) -> list[tuple[str, bytes]]:
        rows = await self._read(lambda c: c.execute(
            "SELECT message_id, vector FROM message_vectors WHERE user_id = ? AND model = ?", (user_id, model)
        ).fetchall())
        return [(r[0], bytes(r[1])) for r in rows]

    async def search_hits(self, user_id: str, message_ids: Sequence[str]) -> list[SearchHit]:
        if not message_ids:
            return []
        marks = ",".join("?" * len(message_ids))
        rows = await self._read(lambda c: c.execute(
            f"SELECT m.id, m.chat_id, m.role, m.created_at, c.title, substr(m.content, 1, {SNIPPET_CHARS}) AS snip"
            f" FROM messages m JOIN chats c ON c.id = m.chat_id WHERE m.user_id = ? AND m.id IN ({marks})",
            (user_id, *message_ids)).fetchall())
        by_id = {r["id"]: SearchHit(r["id"], r["chat_id"], r["title"], r["role"], r["created_at"], r["snip"])
                 for r in rows}
        return [by_id[i] for i in message_ids if i in by_id]
