"""The SQLite store's schema as numbered steps, applied in order under the database's write lock.

The version is SQLite's own `PRAGMA user_version` (0 for a database made before numbered steps: each step is
written so that it also brings such a database, whatever earlier build made it, to its shape). All pending
steps run in one `BEGIN IMMEDIATE` transaction that re-reads the version first, so N processes starting on one
file at once apply each step once; a database newer than this code is refused, never touched.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from typing import Callable

from .base import SchemaError
from .sqlite_util import transaction

_TABLES = (
    """CREATE TABLE IF NOT EXISTS users (
        id TEXT PRIMARY KEY,
        email TEXT NOT NULL UNIQUE,
        name TEXT NOT NULL,
        password_hash TEXT NOT NULL,
        roles TEXT NOT NULL,
        created_at REAL NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS sessions (
        id TEXT PRIMARY KEY,
        user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        created_at REAL NOT NULL,
        expires_at REAL NOT NULL,
        revoked INTEGER NOT NULL DEFAULT 0
    )""",
    "CREATE INDEX IF NOT EXISTS sessions_by_user ON sessions(user_id)",
    """CREATE TABLE IF NOT EXISTS chats (
        id TEXT PRIMARY KEY,
        user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        title TEXT NOT NULL,
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS chats_by_user_created ON chats(user_id, created_at DESC, id DESC)",
    """CREATE TABLE IF NOT EXISTS messages (
        id TEXT PRIMARY KEY,
        chat_id TEXT NOT NULL REFERENCES chats(id) ON DELETE CASCADE,
        user_id TEXT NOT NULL,
        role TEXT NOT NULL,
        content TEXT NOT NULL,
        status TEXT NOT NULL,
        finish_reason TEXT,
        event_count INTEGER NOT NULL DEFAULT 0,
        fence INTEGER NOT NULL DEFAULT 0,
        input_tokens INTEGER,
        output_tokens INTEGER,
        receipt TEXT,
        sections TEXT,
        seq INTEGER NOT NULL,
        created_at REAL NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS messages_by_chat_time ON messages(chat_id, created_at, seq)",
    "CREATE INDEX IF NOT EXISTS messages_streaming ON messages(created_at) WHERE status = 'streaming'",
    """CREATE TABLE IF NOT EXISTS api_keys (
        id TEXT PRIMARY KEY,
        user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        name TEXT NOT NULL,
        key_hash TEXT NOT NULL UNIQUE,
        hint TEXT NOT NULL,
        created_at REAL NOT NULL,
        last_used_at REAL
    )""",
    "CREATE INDEX IF NOT EXISTS api_keys_by_user ON api_keys(user_id, created_at DESC)",
    """CREATE TABLE IF NOT EXISTS migration_jobs (
        id TEXT PRIMARY KEY,
        user_id TEXT NOT NULL,
        data TEXT NOT NULL,
        finished INTEGER NOT NULL DEFAULT 0
    )""",
    "CREATE INDEX IF NOT EXISTS migration_jobs_unfinished ON migration_jobs(finished)",
    """CREATE TABLE IF NOT EXISTS migration_batches (
        job_id TEXT NOT NULL,
        seq INTEGER NOT NULL,
        payload TEXT NOT NULL,
        status TEXT NOT NULL,
        PRIMARY KEY (job_id, seq)
    )""",
    """CREATE TABLE IF NOT EXISTS imported_conversations (
        user_id TEXT NOT NULL,
        content_hash TEXT NOT NULL,
        chat_id TEXT NOT NULL,
        PRIMARY KEY (user_id, content_hash)
    )""",
)

# Columns that builds before numbered steps added to messages by checking for them at each start.
_LATE_COLUMNS = (("fence", "INTEGER NOT NULL DEFAULT 0"), ("input_tokens", "INTEGER"), ("output_tokens", "INTEGER"),
                 ("receipt", "TEXT"), ("sections", "TEXT"))


def _tables(conn: sqlite3.Connection) -> None:
    for statement in _TABLES:
        conn.execute(statement)
    columns = {row[1] for row in conn.execute("PRAGMA table_info(messages)")}
    for column, kind in _LATE_COLUMNS:
        if column not in columns:
            conn.execute(f"ALTER TABLE messages ADD COLUMN {column} {kind}")
    conn.execute("DROP INDEX IF EXISTS messages_by_chat")  # replaced by messages_by_chat_time


# Full-text search over finished messages. A finished message is only queued for the index (a rowid into a
# small table); the indexing itself runs in batches off the busy moments (index_pending) or just before a search,
# so a reply's last write does not pay for tokenizing it (bench/README: ~0.23 ms of the one core per reply).
# One trigger per kind of change keeps the order of its statements fixed (unindex the old text, then queue).
_SEARCH_SCHEMA = (
    "CREATE VIRTUAL TABLE IF NOT EXISTS messages_fts USING fts5(content, content='messages', content_rowid='rowid',"
    " tokenize='unicode61 remove_diacritics 2')",
    "CREATE TABLE messages_fts_pending (id INTEGER PRIMARY KEY)",
    "CREATE TRIGGER messages_fts_insert AFTER INSERT ON messages WHEN new.status != 'streaming' BEGIN"
    " INSERT OR IGNORE INTO messages_fts_pending(id) VALUES (new.rowid); END",
    "CREATE TRIGGER messages_fts_update AFTER UPDATE ON messages BEGIN"
    " INSERT INTO messages_fts(messages_fts, rowid, content) SELECT 'delete', old.rowid, old.content"
    "  WHERE old.status != 'streaming' AND NOT EXISTS (SELECT 1 FROM messages_fts_pending WHERE id = old.rowid);"
    " INSERT OR IGNORE INTO messages_fts_pending(id) SELECT new.rowid WHERE new.status != 'streaming'; END",
    "CREATE TRIGGER messages_fts_delete AFTER DELETE ON messages BEGIN"
    " INSERT INTO messages_fts(messages_fts, rowid, content) SELECT 'delete', old.rowid, old.content"
    "  WHERE old.status != 'streaming' AND NOT EXISTS (SELECT 1 FROM messages_fts_pending WHERE id = old.rowid);"
    " DELETE FROM messages_fts_pending WHERE id = old.rowid; END",
)
_OLD_SEARCH_TRIGGERS = ("messages_fts_insert", "messages_fts_unindex", "messages_fts_reindex", "messages_fts_delete")


def _search_index(conn: sqlite3.Connection) -> None:
    """The index with its queue; messages already there are queued for it (an index an earlier build kept in step
    synchronously keeps its rows, and gets the queueing triggers)."""
    if conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'messages_fts_pending'").fetchone() is not None:
        return  # made by a build before numbered steps
    fresh = not conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'messages_fts'").fetchone()
    for trigger in _OLD_SEARCH_TRIGGERS:
        conn.execute(f"DROP TRIGGER IF EXISTS {trigger}")
    for statement in _SEARCH_SCHEMA:
        conn.execute(statement)
    if fresh:
        conn.execute("INSERT INTO messages_fts_pending(id) SELECT rowid FROM messages WHERE status != 'streaming'")


def _model_column(conn: sqlite3.Connection) -> None:
    if "model" not in {row[1] for row in conn.execute("PRAGMA table_info(messages)")}:
        conn.execute("ALTER TABLE messages ADD COLUMN model TEXT")


def _vectors(conn: sqlite3.Connection) -> None:
    conn.execute("""CREATE TABLE IF NOT EXISTS message_vectors (
        message_id TEXT NOT NULL REFERENCES messages(id) ON DELETE CASCADE,
        model TEXT NOT NULL,
        user_id TEXT NOT NULL,
        vector BLOB NOT NULL,
        PRIMARY KEY (message_id, model)
    )""")
    conn.execute("CREATE INDEX IF NOT EXISTS message_vectors_by_user ON message_vectors(user_id, model)")


def _context_column(conn: sqlite3.Connection) -> None:
    if "context_messages" not in {row[1] for row in conn.execute("PRAGMA table_info(messages)")}:
        conn.execute("ALTER TABLE messages ADD COLUMN context_messages INTEGER")
    # An exchange takes the chat's next numbers: MAX(seq) from an index, not a walk over a long chat's every row.
    conn.execute("CREATE INDEX IF NOT EXISTS messages_by_chat_seq ON messages(chat_id, seq)")


def _webhooks(conn: sqlite3.Connection) -> None:
    from .sqlite_webhooks import SCHEMA

    for statement in SCHEMA:
        conn.execute(statement)


def _plans(conn: sqlite3.Connection) -> None:
    columns = {row[1] for row in conn.execute("PRAGMA table_info(users)")}
    for column, kind in (("plan", "TEXT"), ("plan_at", "REAL")):
        if column not in columns:
            conn.execute(f"ALTER TABLE users ADD COLUMN {column} {kind}")


def _stripe_events(conn: sqlite3.Connection) -> None:
    conn.execute("CREATE TABLE IF NOT EXISTS stripe_events (id TEXT PRIMARY KEY, received_at REAL NOT NULL)")


@dataclass(frozen=True, slots=True)
class Step:
    number: int
    what: str
    apply: Callable[[sqlite3.Connection], None]


STEPS = (
    Step(1, "tables and indexes, and the columns added before numbered steps", _tables),
    Step(2, "the full-text search index of finished messages", _search_index),
    Step(3, "the model that answered each reply", _model_column),
    Step(4, "vectors of finished messages for semantic search", _vectors),
    Step(5, "how many earlier messages each reply's request carried; a chat's last number by index", _context_column),
    Step(6, "outgoing webhooks: endpoints and their queued deliveries", _webhooks),
    Step(7, "each user's plan, and when it was set", _plans),
    Step(8, "Stripe event ids already handled", _stripe_events),
)
LATEST = STEPS[-1].number


def version(conn: sqlite3.Connection) -> int:
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


def pending(conn: sqlite3.Connection, where: str) -> list[Step]:
    """The steps this database lacks; SchemaError when it is newer than this code."""
    current = version(conn)
    if current > LATEST:
        raise SchemaError(f"the database {where} has schema version {current}, newer than this gima-server's {LATEST}: "
                          "run the gima-server version that made it (or restore a backup)")
    return [step for step in STEPS if step.number > current]


def upgrade(conn: sqlite3.Connection, where: str) -> list[Step]:
    """Apply every pending step in one transaction under the write lock; return those applied (none when another
    process applied them first)."""
    if not pending(conn, where):
        return []
    with transaction(conn):  # BEGIN IMMEDIATE: a second process waits here, then finds nothing left to do
        steps = pending(conn, where)
        for step in steps:
            step.apply(conn)
        conn.execute(f"PRAGMA user_version = {LATEST}")
    return steps
