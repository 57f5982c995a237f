"""The MigrationStore part of the SQLite store."""

from __future__ import annotations

import dataclasses
import json
import sqlite3
import time
from typing import Any, Callable, Sequence

from ..ids import new_message_id
from ..migration.model import ImportedConversation, MigrationJob, message_times
from .sqlite_util import new_id as _new_id
from .sqlite_util import transaction as _transaction


class SqliteMigrationMixin:
    """The MigrationStore part of the SQLite store."""

    _run: Callable[..., Any]
    _read: Callable[..., Any]

    async def create_migration_job(self, job: MigrationJob) -> None:
        await self._run(lambda c: c.execute(
            "INSERT INTO migration_jobs (id, user_id, data, finished) VALUES (?,?,?,0)", (job.id, job.user_id, _job_json(job))
        ))

    async def get_migration_job(self, user_id: str, job_id: str) -> MigrationJob | None:
        row = await self._read(lambda c: c.execute(
            "SELECT data FROM migration_jobs WHERE id = ? AND user_id = ?", (job_id, user_id)).fetchone())
        return MigrationJob(**json.loads(row["data"])) if row else None

    async def save_migration_state(self, job: MigrationJob) -> MigrationJob | None:
        def write(conn: sqlite3.Connection) -> MigrationJob | None:
            with _transaction(conn):
                stored = _stored_job(conn, job.id)
                if stored is None or stored.finished or job.status == "done" and conn.execute(
                        "SELECT 1 FROM migration_batches WHERE job_id = ? AND status = 'queued'", (job.id,)).fetchone():
                    return stored  # a batch got in before the job could end: it is imported first
                saved = stored.with_state_of(job)
                _save_job(conn, saved)
                return saved

        result: MigrationJob | None = await self._run(write)
        return result

    async def unfinished_migration_jobs(self) -> list[MigrationJob]:
        rows = await self._read(lambda c: c.execute("SELECT data FROM migration_jobs WHERE finished = 0").fetchall())
        return [MigrationJob(**json.loads(r["data"])) for r in rows]

    async def add_migration_batch(self, job_id: str, seq: int, payload: str) -> bool:
        def insert(conn: sqlite3.Connection) -> bool:
            return conn.execute(
                "INSERT OR IGNORE INTO migration_batches (job_id, seq, payload, status) SELECT ?,?,?, 'queued'"
                " WHERE EXISTS (SELECT 1 FROM migration_jobs WHERE id = ? AND finished = 0)",
                (job_id, seq, payload, job_id),
            ).rowcount > 0

        return bool(await self._run(insert))

    async def next_migration_batch(self, job_id: str) -> tuple[int, str] | None:
        row = await self._read(lambda c: c.execute(
            "SELECT seq, payload FROM migration_batches WHERE job_id = ? AND status = 'queued' ORDER BY seq LIMIT 1",
            (job_id,)).fetchone())
        return (int(row["seq"]), str(row["payload"])) if row else None

    async def pending_migration_batches(self, job_id: str) -> int:
        row = await self._read(lambda c: c.execute(
            "SELECT COUNT(*) AS n FROM migration_batches WHERE job_id = ? AND status = 'queued'", (job_id,)).fetchone())
        return int(row["n"])

    async def import_migration_batch(
        self, job: MigrationJob, seq: int, conversations: Sequence[ImportedConversation]
    ) -> tuple[int, int]:
        def write(conn: sqlite3.Connection) -> tuple[int, int]:
            imported = skipped = 0
            with _transaction(conn):
                for conversation in conversations:
                    if conversation.messages and _import_one(conn, job.user_id, conversation):
                        imported += 1
                    else:
                        skipped += 1
                conn.execute("UPDATE migration_batches SET status = 'done', payload = '' WHERE job_id = ? AND seq = ?",
                             (job.id, seq))
                stored = _stored_job(conn, job.id)  # another process may have counted batches since job was read
                counted = (stored or job).counted(imported, skipped, conversations)
                _save_job(conn, counted)
            job.absorb(counted)  # only once the transaction has committed
            return imported, skipped

        result: tuple[int, int] = await self._run(write)
        return result

    async def fail_migration_batch(self, job_id: str, seq: int) -> None:
        await self._run(lambda c: c.execute(
            "UPDATE migration_batches SET status = 'failed' WHERE job_id = ? AND seq = ?", (job_id, seq)))


def _job_json(job: MigrationJob) -> str:
    return json.dumps(dataclasses.asdict(job))


def _stored_job(conn: sqlite3.Connection, job_id: str) -> MigrationJob | None:
    row = conn.execute("SELECT data FROM migration_jobs WHERE id = ?", (job_id,)).fetchone()
    return MigrationJob(**json.loads(row["data"])) if row else None


def _save_job(conn: sqlite3.Connection, job: MigrationJob) -> None:
    finished = 1 if job.finished else 0
    conn.execute("UPDATE migration_jobs SET data = ?, finished = ? WHERE id = ?", (_job_json(job), finished, job.id))


def _import_one(conn: sqlite3.Connection, user_id: str, conversation: ImportedConversation) -> bool:
    chat_id = _new_id()
    if not conn.execute(
        "INSERT OR IGNORE INTO imported_conversations (user_id, content_hash, chat_id) VALUES (?,?,?)",
        (user_id, conversation.content_hash, chat_id),
    ).rowcount:
        return False  # imported before, by this job or another: never rewritten
    created = conversation.created_at or time.time()
    conn.execute("INSERT INTO chats (id, user_id, title, created_at, updated_at) VALUES (?,?,?,?,?)",
                 (chat_id, user_id, conversation.title, created, created))
    conn.executemany(
        "INSERT INTO messages (id, chat_id, user_id, role, content, status, seq, created_at, finish_reason)"
        " VALUES (?,?,?,?,?, 'complete', ?,?,?)",
        [(new_message_id(), chat_id, user_id, m.role, m.content, i + 1, at, "stop" if m.role == "assistant" else None)
         for i, (m, at) in enumerate(zip(conversation.messages, message_times(conversation, created), strict=True))],
    )
    return True


