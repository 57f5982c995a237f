"""The PostgreSQL store's schema as numbered steps, applied in one transaction under an advisory lock.

The version lives in `gima_schema` (one row). DDL is transactional in PostgreSQL, so the steps and the new
version commit together or not at all; `pg_advisory_xact_lock` makes N processes starting at once queue, and
each re-reads the version once it holds the lock, so every step runs once. A database newer than the code is
refused before anything is changed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Awaitable, Callable

from .base import SchemaError
from .postgres_text import fold
from .postgres_webhooks import SCHEMA as _WEBHOOKS

# Any constant of our own: the lock is the database's, shared by every process that opens it.
_LOCK_KEY = 0x67696D61  # "gima"

_TABLES = (
    """CREATE TABLE users (
        id TEXT PRIMARY KEY,
        email TEXT NOT NULL UNIQUE,
        name TEXT NOT NULL,
        password_hash TEXT NOT NULL,
        roles TEXT[] NOT NULL,
        created_at DOUBLE PRECISION NOT NULL
    )""",
    """CREATE TABLE sessions (
        id TEXT PRIMARY KEY,
        user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        created_at DOUBLE PRECISION NOT NULL,
        expires_at DOUBLE PRECISION NOT NULL,
        revoked BOOLEAN NOT NULL DEFAULT FALSE
    )""",
    "CREATE INDEX sessions_by_user ON sessions(user_id, created_at DESC)",
    """CREATE TABLE chats (
        id TEXT PRIMARY KEY,
        user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        title TEXT NOT NULL,
        created_at DOUBLE PRECISION NOT NULL,
        updated_at DOUBLE PRECISION NOT NULL
    )""",
    "CREATE INDEX chats_by_user_created ON chats(user_id, created_at DESC, id DESC)",
    """CREATE TABLE messages (
        id TEXT PRIMARY KEY,
        chat_id TEXT NOT NULL REFERENCES chats(id) ON DELETE CASCADE,
        user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        role TEXT NOT NULL,
        content TEXT NOT NULL,
        status TEXT NOT NULL,
        finish_reason TEXT,
        event_count INTEGER NOT NULL DEFAULT 0,
        fence BIGINT NOT NULL DEFAULT 0,
        input_tokens INTEGER,
        output_tokens INTEGER,
        receipt TEXT,
        sections TEXT,
        seq INTEGER NOT NULL,
        created_at DOUBLE PRECISION NOT NULL
    )""",
    "CREATE INDEX messages_by_chat_time ON messages(chat_id, created_at, seq)",
    "CREATE INDEX messages_by_user ON messages(user_id)",
    "CREATE INDEX messages_streaming ON messages(created_at) WHERE status = 'streaming'",
    """CREATE TABLE api_keys (
        id TEXT PRIMARY KEY,
        user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        name TEXT NOT NULL,
        key_hash TEXT NOT NULL UNIQUE,
        hint TEXT NOT NULL,
        created_at DOUBLE PRECISION NOT NULL,
        last_used_at DOUBLE PRECISION
    )""",
    "CREATE INDEX api_keys_by_user ON api_keys(user_id, created_at DESC)",
    """CREATE TABLE migration_jobs (
        id TEXT PRIMARY KEY,
        user_id TEXT NOT NULL,
        data TEXT NOT NULL,
        finished BOOLEAN NOT NULL DEFAULT FALSE
    )""",
    "CREATE INDEX migration_jobs_unfinished ON migration_jobs(id) WHERE NOT finished",
    "CREATE INDEX migration_jobs_by_user ON migration_jobs(user_id)",
    """CREATE TABLE migration_batches (
        job_id TEXT NOT NULL,
        seq INTEGER NOT NULL,
        payload TEXT NOT NULL,
        status TEXT NOT NULL,
        PRIMARY KEY (job_id, seq)
    )""",
    """CREATE TABLE imported_conversations (
        user_id TEXT NOT NULL,
        content_hash TEXT NOT NULL,
        chat_id TEXT NOT NULL,
        PRIMARY KEY (user_id, content_hash)
    )""",
)

# The search words of a finished message, folded by the store (postgres_text.fold: lower case, no diacritics) so
# that no extension (unaccent) is needed; NULL while a reply streams and until the store indexes it (step 3).
_SEARCH = (
    "ALTER TABLE messages ADD COLUMN search tsvector",
    "CREATE INDEX messages_search ON messages USING GIN (search)",
)


async def _index_finished_messages(conn: Any) -> None:
    """Messages a database already holds get their search words (folded here, as the store folds new ones)."""
    rows = await conn.fetch("SELECT id, content FROM messages WHERE status <> 'streaming'")
    await conn.executemany("UPDATE messages SET search = to_tsvector('simple', $2) WHERE id = $1",
                           [(r["id"], fold(r["content"])) for r in rows])


async def _nothing(conn: Any) -> None:
    return None


@dataclass(frozen=True, slots=True)
class Step:
    number: int
    what: str
    statements: tuple[str, ...]
    then: Callable[[Any], Awaitable[None]] = _nothing  # data the new shape needs, in the same transaction


# Finished messages whose search words are still to be written (the store queues them; ADR 18).
_UNINDEXED = ("CREATE INDEX messages_unindexed ON messages(id) WHERE search IS NULL AND status <> 'streaming'",)

_VECTORS = (
    """CREATE TABLE message_vectors (
        message_id text NOT NULL REFERENCES messages(id) ON DELETE CASCADE,
        model text NOT NULL,
        user_id text NOT NULL,
        vector bytea NOT NULL,
        PRIMARY KEY (message_id, model)
    )""",
    "CREATE INDEX message_vectors_by_user ON message_vectors(user_id, model)",
)

STEPS = (
    Step(1, "tables and indexes", _TABLES),
    Step(2, "the full-text search index of finished messages", _SEARCH, _index_finished_messages),
    Step(3, "a queue of finished messages not yet in the search index", _UNINDEXED),
    Step(4, "the model that answered each reply", ("ALTER TABLE messages ADD COLUMN model text",)),
    Step(5, "vectors of finished messages for semantic search", _VECTORS),
    Step(6, "how many earlier messages each reply's request carried; a chat's last number by index",
         ("ALTER TABLE messages ADD COLUMN context_messages integer",
          "CREATE INDEX messages_by_chat_seq ON messages(chat_id, seq)")),
    Step(7, "outgoing webhooks: endpoints and their queued deliveries", _WEBHOOKS),
    Step(8, "each user's plan, and when it was set",
         ("ALTER TABLE users ADD COLUMN plan text", "ALTER TABLE users ADD COLUMN plan_at double precision")),
    Step(9, "Stripe event ids already handled",
         ("CREATE TABLE stripe_events (id text PRIMARY KEY, received_at double precision NOT NULL)",)),
)
LATEST = STEPS[-1].number


async def version(conn: Any) -> int:
    # A query on the catalog, not to_regclass: that answers from a cache that a process waiting for the lock
    # filled before another process made the table.
    exists = await conn.fetchval("SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_tables WHERE tablename = 'gima_schema'"
                                 " AND schemaname = current_schema())")
    if not exists:
        return 0
    return int(await conn.fetchval("SELECT version FROM gima_schema") or 0)


def _check(current: int, where: str) -> None:
    if current > LATEST:
        raise SchemaError(f"the database {where} has schema version {current}, newer than this gima-server's {LATEST}: "
                          "run the gima-server version that made it (or restore a backup)")


async def pending(conn: Any, where: str) -> list[Step]:
    """The steps this database lacks; SchemaError when it is newer than this code."""
    current = await version(conn)
    _check(current, where)
    return [step for step in STEPS if step.number > current]


async def upgrade(conn: Any, where: str, to: int = LATEST) -> list[Step]:
    """Apply every pending step in one transaction under the advisory lock; return those applied (none when
    another process applied them first)."""
    if not [s for s in await pending(conn, where) if s.number <= to]:
        return []
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", _LOCK_KEY)
        steps = [s for s in await pending(conn, where) if s.number <= to]  # re-read under the lock
        if not steps:
            return []
        await conn.execute("CREATE TABLE IF NOT EXISTS gima_schema (one BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (one),"
                           " version INTEGER NOT NULL)")
        for step in steps:
            for statement in step.statements:
                await conn.execute(statement)
            await step.then(conn)
        await conn.execute("INSERT INTO gima_schema (one, version) VALUES (TRUE, $1)"
                           " ON CONFLICT (one) DO UPDATE SET version = EXCLUDED.version", steps[-1].number)
    return steps
