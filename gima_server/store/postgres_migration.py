"""The MigrationStore part of the PostgreSQL store."""

from __future__ import annotations

import dataclasses
import json
import time
from typing import Any, Awaitable, Callable, Sequence, TypeVar

import asyncpg

from ..ids import new_message_id
from ..migration.model import ImportedConversation, MigrationJob, message_times
from .postgres_text import fold, storable
from .sqlite_util import new_id as _new_id

T = TypeVar("T")


class PostgresMigrationMixin:
    """Imports of old history: jobs, their queued batches, and the conversations imported once per user."""

    _fetchrow: Callable[..., Awaitable[asyncpg.Record | None]]
    _fetch: Callable[..., Awaitable[list[asyncpg.Record]]]
    _execute: Callable[..., Awaitable[int]]
    _in_transaction: Callable[..., Awaitable[Any]]

    async def create_migration_job(self, job: MigrationJob) -> None:
        await self._execute("INSERT INTO migration_jobs (id, user_id, data) VALUES ($1,$2,$3)",
                            job.id, job.user_id, _job_json(job))

    async def get_migration_job(self, user_id: str, job_id: str) -> MigrationJob | None:
        row = await self._fetchrow("SELECT data FROM migration_jobs WHERE id = $1 AND user_id = $2", job_id, user_id)
        return MigrationJob(**json.loads(row["data"])) if row else None

    async def save_migration_state(self, job: MigrationJob) -> MigrationJob | None:
        async def write(conn: asyncpg.Connection) -> MigrationJob | None:
            stored = await _stored_job(conn, job.id)
            if stored is None or stored.finished or job.status == "done" and await conn.fetchval(
                    "SELECT EXISTS (SELECT 1 FROM migration_batches WHERE job_id = $1 AND status = 'queued')", job.id):
                return stored  # a batch got in before the job could end: it is imported first
            saved = stored.with_state_of(job)
            await conn.execute(*_save_job(saved))
            return saved

        result: MigrationJob | None = await self._in_transaction(write)
        return result

    async def unfinished_migration_jobs(self) -> list[MigrationJob]:
        rows = await self._fetch("SELECT data FROM migration_jobs WHERE NOT finished")
        return [MigrationJob(**json.loads(r["data"])) for r in rows]

    async def add_migration_batch(self, job_id: str, seq: int, payload: str) -> bool:
        return await self._execute(
            # FOR SHARE: waits for a finishing job's lock, and holds off finishing until this batch is in.
            "INSERT INTO migration_batches (job_id, seq, payload, status) SELECT $1,$2,$3,'queued'"
            " WHERE EXISTS (SELECT 1 FROM migration_jobs WHERE id = $1 AND NOT finished FOR SHARE)"
            " ON CONFLICT DO NOTHING", job_id, seq, payload) > 0

    async def next_migration_batch(self, job_id: str) -> tuple[int, str] | None:
        row = await self._fetchrow("SELECT seq, payload FROM migration_batches WHERE job_id = $1 AND status = 'queued'"
                                   " ORDER BY seq LIMIT 1", job_id)
        return (int(row["seq"]), str(row["payload"])) if row else None

    async def pending_migration_batches(self, job_id: str) -> int:
        row = await self._fetchrow("SELECT COUNT(*) AS n FROM migration_batches WHERE job_id = $1 AND status = 'queued'",
                                   job_id)
        return int(row["n"]) if row else 0

    async def import_migration_batch(
        self, job: MigrationJob, seq: int, conversations: Sequence[ImportedConversation]
    ) -> tuple[int, int]:
        async def write(conn: asyncpg.Connection) -> tuple[int, int, MigrationJob]:
            imported = skipped = 0
            for conversation in conversations:
                if conversation.messages and await _import_one(conn, job.user_id, conversation):
                    imported += 1
                else:
                    skipped += 1
            await conn.execute("UPDATE migration_batches SET status = 'done', payload = '' WHERE job_id = $1 AND seq = $2",
                               job.id, seq)
            stored = await _stored_job(conn, job.id)  # another process may have counted batches since job was read
            counted = (stored or job).counted(imported, skipped, conversations)
            await conn.execute(*_save_job(counted))
            return imported, skipped, counted

        imported, skipped, counted = await self._in_transaction(write)
        job.absorb(counted)  # only once the transaction has committed
        return imported, skipped

    async def fail_migration_batch(self, job_id: str, seq: int) -> None:
        await self._execute("UPDATE migration_batches SET status = 'failed' WHERE job_id = $1 AND seq = $2", job_id, seq)


def _job_json(job: MigrationJob) -> str:
    return json.dumps(dataclasses.asdict(job))


async def _stored_job(conn: asyncpg.Connection, job_id: str) -> MigrationJob | None:
    """Locked until the transaction ends: the read and the write that follows are one step for other processes."""
    row = await conn.fetchrow("SELECT data FROM migration_jobs WHERE id = $1 FOR UPDATE", job_id)
    return MigrationJob(**json.loads(row["data"])) if row else None


def _save_job(job: MigrationJob) -> tuple[str, str, bool, str]:
    return ("UPDATE migration_jobs SET data = $1, finished = $2 WHERE id = $3", _job_json(job), job.finished, job.id)


async def _import_one(conn: asyncpg.Connection, user_id: str, conversation: ImportedConversation) -> bool:
    chat_id = _new_id()
    if await conn.fetchval(
        "INSERT INTO imported_conversations (user_id, content_hash, chat_id) VALUES ($1,$2,$3)"
        " ON CONFLICT DO NOTHING RETURNING chat_id", user_id, conversation.content_hash, chat_id,
    ) is None:
        return False  # imported before, by this job or another: never rewritten
    created = conversation.created_at or time.time()
    await conn.execute("INSERT INTO chats (id, user_id, title, created_at, updated_at) VALUES ($1,$2,$3,$4,$4)",
                       chat_id, user_id, storable(conversation.title), created)
    rows = []
    for i, (m, at) in enumerate(zip(conversation.messages, message_times(conversation, created), strict=True)):
        text = storable(m.content)
        rows.append((new_message_id(), chat_id, user_id, m.role, text, i + 1, at, "stop" if m.role == "assistant" else None,
                     fold(text)))
    await conn.executemany(
        "INSERT INTO messages (id, chat_id, user_id, role, content, status, seq, created_at, finish_reason, search)"
        " VALUES ($1,$2,$3,$4,$5,'complete',$6,$7,$8, to_tsvector('simple', $9))", rows)
    return True
