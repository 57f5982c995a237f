"""Semantic search's vectors in the PostgreSQL store (postgres_schema step 5): one row per message and model, as
bytea (the honest scan of ADR 20; pgvector is not on every PostgreSQL)."""

from __future__ import annotations

from typing import Any, Awaitable, Callable, Sequence

from .base import SearchHit

SNIPPET_CHARS = 200


class PostgresVectorsMixin:
    _fetch: Callable[..., Awaitable[list[Any]]]
    _execute: Callable[..., Awaitable[int]]

    async def messages_to_embed(self, model: str, limit: int, user_id: str | None = None) -> list[tuple[str, str, str]]:
        only_user = " AND m.user_id = $3" if user_id is not None else ""
        args = (model, limit, user_id) if user_id is not None else (model, limit)
        rows = await self._fetch(
            "SELECT m.id, m.user_id, m.content FROM messages m WHERE m.status <> 'streaming' AND m.content <> ''"
            " AND NOT EXISTS (SELECT 1 FROM message_vectors v WHERE v.message_id = m.id AND v.model = $1)"
            f"{only_user} LIMIT $2", *args)
        return [(r["id"], r["user_id"], r["content"]) for r in rows]

    async def save_vectors(self, model: str, vectors: Sequence[tuple[str, bytes]]) -> int:
        if not vectors:
            return 0
        return await self._execute(
            "INSERT INTO message_vectors (message_id, model, user_id, vector)"
            " SELECT m.id, $1, m.user_id, v.vector FROM unnest($2::text[], $3::bytea[]) AS v(id, vector)"
            " JOIN messages m ON m.id = v.id ON CONFLICT DO NOTHING",
            model, [message_id for message_id, _ in vectors], [blob for _, blob in vectors])

    async def user_vectors(self, user_id: str, model: str) -> list[tuple[str, bytes]]:
        rows = await self._fetch("SELECT message_id, vector FROM message_vectors WHERE user_id = $1 AND model = $2",
                                 user_id, model)
        return [(r["message_id"], bytes(r["vector"])) for r in rows]

    async def search_hits(self, user_id: str, message_ids: Sequence[str]) -> list[SearchHit]:
        if not message_ids:
            return []
        rows = await self._fetch(
            f"SELECT m.id, m.chat_id, m.role, m.created_at, c.title, left(m.content, {SNIPPET_CHARS}) AS snip"
            " FROM messages m JOIN chats c ON c.id = m.chat_id WHERE m.user_id = $1 AND m.id = ANY($2::text[])",
            user_id, list(message_ids))
        by_id = {r["id"]: SearchHit(r["id"], r["chat_id"], r["title"], r["role"], r["created_at"], r["snip"])
                 for r in rows}
        return [by_id[i] for i in message_ids if i in by_id]
