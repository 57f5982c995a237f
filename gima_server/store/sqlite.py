"""SQLite store: the embedded default. One connection on one worker thread keeps blocking calls off the loop."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import sqlite3
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence, TypeVar, cast

from ..apikeys.model import ApiKey
from ..streams.snapshot import decode_sections, encode_sections
from ..webhooks.model import event_body, reply_event
from . import sqlite_schema
from .base import AuthSession, Chat, DuplicateError, Exchange, Message, Receipt, StoreUnavailable, User
from .sqlite_migration import SqliteMigrationMixin
from .sqlite_rows import SqliteRowsMixin
from .sqlite_search import SqliteSearchMixin
from .sqlite_util import new_id as _new_id
from .sqlite_util import transaction as _transaction
from .sqlite_vectors import SqliteVectorsMixin
from .sqlite_webhooks import SqliteWebhooksMixin, fan_out

T = TypeVar("T")

_FAULTS = ("full", "readonly", "read-only", "disk i/o", "unable to open", "locked", "busy")


@contextlib.contextmanager
def _unavailable_on_fault() -> Iterator[None]:
    """SQLite's errors of the disk (full, read-only, I/O, locked past busy_timeout) as StoreUnavailable: a clear 503
    for the request, and a reply that waits for the store instead of failing. The connection stays usable."""
    try:
        yield
    except sqlite3.OperationalError as exc:
        if any(fault in str(exc).lower() for fault in _FAULTS):
            raise StoreUnavailable(str(exc)) from exc
        raise


def _prepare(conn: sqlite3.Connection, where: str) -> None:
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA busy_timeout=5000")
    sqlite_schema.pending(conn, where)  # a database newer than this code is refused before anything changes it
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA foreign_keys=ON")
    sqlite_schema.upgrade(conn, where)


def _in_one_transaction(
    conn: sqlite3.Connection, writes: list[Callable[[sqlite3.Connection], Any]]
) -> list[tuple[Any, Exception | None]]:
    """Each write in a savepoint of its own inside one transaction: (its value, None) or (None, its refusal).
    An OperationalError (the disk: full, read-only, locked) is no refusal: it ends the whole transaction."""
    if len(writes) > 1:
        try:
            with _transaction(conn):  # the usual case, every write accepted: no savepoint statements (2 per write)
                return [(write(conn), None) for write in writes]
        except sqlite3.OperationalError:
            raise
        except Exception:
            pass  # one refused (a duplicate id, a missing chat): rolled back whole, each again in its own savepoint
    outcomes: list[tuple[Any, Exception | None]] = []
    with _transaction(conn):
        for write in writes:
            conn.execute("SAVEPOINT grouped_write")
            try:
                value = write(conn)
            except sqlite3.OperationalError:
                raise
            except Exception as exc:
                conn.execute("ROLLBACK TO grouped_write")
                conn.execute("RELEASE grouped_write")
                outcomes.append((None, exc))
                continue
            conn.execute("RELEASE grouped_write")
            outcomes.append((value, None))
    return outcomes


_Group = list[tuple[Callable[[sqlite3.Connection], Any], "asyncio.Future[Any]"]]


def _fail_group(group: _Group, exc: BaseException) -> None:
    for _, done in group:
        if not done.done():
            done.set_exception(exc) if isinstance(exc, Exception) else done.cancel()


def _settle_group(group: _Group, outcomes: list[tuple[Any, Exception | None]]) -> None:
    for (_, done), (value, error) in zip(group, outcomes, strict=True):
        if not done.done():
            done.set_exception(error) if error is not None else done.set_result(value)


def _user(row: sqlite3.Row) -> User:
    return User(row["id"], row["email"], row["name"], row["password_hash"], tuple(json.loads(row["roles"])),
                row["created_at"], row["plan"])


def _delete_user_rows(conn: sqlite3.Connection, user_id: str) -> bool:
    """Everything of one user, inside the caller's transaction; False when there was no such user."""
    for table in ("messages", "chats", "sessions", "api_keys", "imported_conversations"):
        conn.execute(f"DELETE FROM {table} WHERE user_id = ?", (user_id,))
    jobs = [r[0] for r in conn.execute("SELECT id FROM migration_jobs WHERE user_id = ?", (user_id,))]
    conn.executemany("DELETE FROM migration_batches WHERE job_id = ?", [(job,) for job in jobs])
    conn.execute("DELETE FROM migration_jobs WHERE user_id = ?", (user_id,))
    return conn.execute("DELETE FROM users WHERE id = ?", (user_id,)).rowcount > 0


def _api_key(row: sqlite3.Row) -> ApiKey:
    return ApiKey(row["id"], row["user_id"], row["name"], row["key_hash"], row["hint"], row["created_at"], row["last_used_at"])


def _chat(row: sqlite3.Row) -> Chat:
    return Chat(row["id"], row["user_id"], row["title"], row["created_at"], row["updated_at"])


def _message(row: sqlite3.Row) -> Message:
    return Message(
        row["id"], row["chat_id"], row["user_id"], row["role"], row["content"], row["status"],
        row["created_at"], row["finish_reason"], row["event_count"], row["input_tokens"], row["output_tokens"],
        Receipt(**json.loads(row["receipt"])) if row["receipt"] else None,
        tuple(decode_sections(row["sections"] or "")), row["model"], row["context_messages"],
    )


# Newest first along messages_by_chat_time, read backwards: a page costs its own rows, however long the chat.
_RECENT_SQL = "SELECT * FROM messages WHERE chat_id = ? AND user_id = ? ORDER BY created_at DESC, seq DESC LIMIT ?"
_OLDER_SQL = ("SELECT * FROM messages WHERE chat_id = ? AND user_id = ? AND (created_at, seq) <"
              " (SELECT created_at, seq FROM messages WHERE id = ? AND chat_id = ?) ORDER BY created_at DESC, seq DESC"
              " LIMIT ?")


class SqliteStore(SqliteMigrationMixin, SqliteSearchMixin, SqliteRowsMixin, SqliteVectorsMixin, SqliteWebhooksMixin):
    """Writes go through one connection on one thread (SQLite has one writer anyway); reads through a second,
    read-only connection on a thread of its own, so a request's lookups never queue behind replies' writes."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="gima-sqlite")
        self._read_executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="gima-sqlite-read")
        self._conn: sqlite3.Connection | None = None
        self._read_conn: sqlite3.Connection | None = None
        self._key_conn: sqlite3.Connection | None = None  # lookups by key, on the loop thread (ADR 10)
        # Writes waiting for the writer thread's next group (_run_grouped), taken by that thread under the lock.
        self._grouped: _Group = []
        self._group_lock = threading.Lock()
        self._group_writing = False  # a group is queued or being written on the writer thread
        self._groups_idle = asyncio.Event()

    async def _run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        def call() -> T:
            assert self._conn is not None, "store is not open"
            with _unavailable_on_fault():
                return fn(self._conn)

        return await asyncio.get_running_loop().run_in_executor(self._executor, call)

    async def _run_grouped(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """A reply's small write (exchange, checkpoint, finish), sharing one transaction with the others waiting
        when the writer is free (group commit): one thread hop and one commit for many replies, where each took
        its own (profile: the writer thread was a fifth of the one core while 1,000 replies started). Each runs
        in a savepoint of its own, so a write that refuses (a duplicate id, a missing chat) undoes only itself;
        a fault of the disk fails the whole group, and each caller retries as before."""
        loop = asyncio.get_running_loop()
        done: asyncio.Future[Any] = loop.create_future()
        with self._group_lock:
            self._grouped.append((fn, done))
            start, self._group_writing = not self._group_writing, True
        if start:
            self._groups_idle.clear()
            self._executor.submit(self._write_next_group, loop)
        return cast(T, await done)

    def _write_next_group(self, loop: asyncio.AbstractEventLoop) -> None:
        """On the writer thread: what is waiting, as one transaction; then the writes that queued meanwhile, at once.
        The next group used to start from a task on the loop, a turn after this one ended: on a saturated loop a
        turn lasts a second or more (bench.ten_thousand: 14 groups in a run, 1-3 s apart), and every reply's end
        waited for its final write that much longer. Submitted again rather than looping, so that the store's other
        writes (_run) take their turn between two groups."""
        with self._group_lock:
            group, self._grouped = self._grouped, []
        try:
            assert self._conn is not None, "store is not open"
            with _unavailable_on_fault():
                outcomes = _in_one_transaction(self._conn, [fn for fn, _ in group])
        except BaseException as exc:
            loop.call_soon_threadsafe(_fail_group, group, exc)
        else:
            # Settled from here, a turn of the loop sooner than through a task that awaits this thread.
            loop.call_soon_threadsafe(_settle_group, group, outcomes)
        finally:
            with self._group_lock:
                more = self._group_writing = bool(self._grouped)
            if more:
                self._executor.submit(self._write_next_group, loop)
            else:
                loop.call_soon_threadsafe(self._groups_idle.set)

    async def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        def call() -> T:
            assert self._read_conn is not None, "store is not open"
            with _unavailable_on_fault():
                return fn(self._read_conn)

        return await asyncio.get_running_loop().run_in_executor(self._read_executor, call)

    async def open(self) -> None:
        def connect() -> None:
            self._path.parent.mkdir(parents=True, exist_ok=True)
            # Switching to WAL and creating the schema need the file to themselves, and SQLite answers
            # "database is locked" without waiting when two processes start on a new file at once.
            for attempt in range(50):
                conn = sqlite3.connect(self._path, isolation_level=None, timeout=5.0)
                try:
                    _prepare(conn, str(self._path))
                except sqlite3.OperationalError as exc:
                    conn.close()
                    if "locked" not in str(exc) or attempt == 49:
                        raise
                    time.sleep(0.1)
                    continue
                except BaseException:
                    conn.close()  # a schema newer than this code: refused, the file untouched
                    raise
                self._conn = conn
                return

        await asyncio.get_running_loop().run_in_executor(self._executor, connect)

        def connect_reader() -> None:
            conn = sqlite3.connect(f"file:{self._path}?mode=ro", uri=True, isolation_level=None)
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA busy_timeout=5000")
            self._read_conn = conn

        await asyncio.get_running_loop().run_in_executor(self._read_executor, connect_reader)
        # Never waits for a lock: a lookup that would is sent to the reader thread instead.
        key_conn = sqlite3.connect(f"file:{self._path}?mode=ro", uri=True, isolation_level=None, timeout=0)
        key_conn.row_factory = sqlite3.Row
        self._key_conn = key_conn

    async def close(self) -> None:
        def disconnect() -> None:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

        def disconnect_reader() -> None:
            if self._read_conn is not None:
                self._read_conn.close()
                self._read_conn = None

        while self._group_writing:  # grouped writes still queued land before the connection closes
            await self._groups_idle.wait()
            self._groups_idle.clear()
        if self._key_conn is not None:
            self._key_conn.close()
            self._key_conn = None
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._read_executor, disconnect_reader)
        await loop.run_in_executor(self._executor, disconnect)
        self._read_executor.shutdown(wait=True)
        self._executor.shutdown(wait=True)

    async def ping(self) -> None:
        await self._run(lambda c: c.execute("SELECT 1").fetchone())
        await self._read(lambda c: c.execute("SELECT 1").fetchone())

    # users
    async def create_user(self, email: str, password_hash: str, name: str, roles: Sequence[str]) -> User:
        user = User(_new_id(), email, name, password_hash, tuple(roles), time.time())

        def insert(conn: sqlite3.Connection) -> None:
            try:
                with _transaction(conn):
                    conn.execute(
                        "INSERT INTO users (id, email, name, password_hash, roles, created_at) VALUES (?,?,?,?,?,?)",
                        (user.id, user.email, user.name, user.password_hash, json.dumps(list(user.roles)),
                         user.created_at),
                    )
                    fan_out(conn, "user.created", event_body("user.created", user.webhook_data(), user.created_at),
                            user.created_at)
            except sqlite3.IntegrityError as exc:
                raise DuplicateError(email) from exc

        await self._run(insert)
        return user

    async def set_plan_from_event(self, event_id: str, user_id: str | None, plan: str | None, at: float) -> bool | None:
        def write(conn: sqlite3.Connection) -> bool | None:
            with _transaction(conn):
                if not conn.execute("INSERT OR IGNORE INTO stripe_events (id, received_at) VALUES (?, ?)",
                                    (event_id, time.time())).rowcount:
                    return None
                return user_id is not None and conn.execute(
                    "UPDATE users SET plan = ?, plan_at = ? WHERE id = ? AND (plan_at IS NULL OR plan_at <= ?)",
                    (plan, at, user_id, at)).rowcount > 0

        result: bool | None = await self._run(write)
        return result

    async def set_plan(self, user_id: str, plan: str | None, at: float) -> bool:
        changed: bool = await self._run(lambda c: c.execute(
            "UPDATE users SET plan = ?, plan_at = ? WHERE id = ? AND (plan_at IS NULL OR plan_at <= ?)",
            (plan, at, user_id, at)).rowcount > 0)
        return changed

    async def _one(self, sql: str, args: tuple[Any, ...]) -> sqlite3.Row | None:
        """One row by its key: read on the loop thread, where it takes microseconds. On a busy loop a trip to the
        reader thread costs milliseconds of waiting for the GIL, twice, and every request's sign-in check queued
        there (ADR 10). A lookup that finds the file locked (a checkpoint, a schema change) goes to the thread."""
        if self._key_conn is not None:
            try:
                found: sqlite3.Row | None = self._key_conn.execute(sql, args).fetchone()
                return found
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) and "busy" not in str(exc):
                    raise
        row: sqlite3.Row | None = await self._read(lambda c: c.execute(sql, args).fetchone())
        return row

    async def get_user(self, user_id: str) -> User | None:
        row = await self._one("SELECT * FROM users WHERE id = ?", (user_id,))
        return _user(row) if row else None

    async def get_user_by_email(self, email: str) -> User | None:
        row = await self._one("SELECT * FROM users WHERE email = ?", (email,))
        return _user(row) if row else None

    async def set_roles(self, user_id: str, roles: Sequence[str]) -> User | None:
        await self._run(lambda c: c.execute("UPDATE users SET roles = ? WHERE id = ?", (json.dumps(list(roles)), user_id)))
        return await self.get_user(user_id)

    # sessions
    async def create_session(self, user_id: str, ttl_s: float) -> AuthSession:
        now = time.time()
        session = AuthSession(_new_id(), user_id, now, now + ttl_s, False)
        await self._run(
            lambda c: c.execute(
                "INSERT INTO sessions (id, user_id, created_at, expires_at, revoked) VALUES (?,?,?,?,0)",
                (session.id, user_id, session.created_at, session.expires_at),
            )
        )
        return session

    async def get_session(self, session_id: str) -> AuthSession | None:
        row = await self._one("SELECT * FROM sessions WHERE id = ?", (session_id,))
        if row is None:
            return None
        return AuthSession(row["id"], row["user_id"], row["created_at"], row["expires_at"], bool(row["revoked"]))

    async def get_session_user(self, session_id: str) -> tuple[AuthSession, User] | None:
        session = await self.get_session(session_id)
        user = await self.get_user(session.user_id) if session is not None else None
        return (session, user) if session is not None and user is not None else None

    async def revoke_session(self, session_id: str) -> None:
        await self._run(lambda c: c.execute("UPDATE sessions SET revoked = 1 WHERE id = ?", (session_id,)))

    async def delete_guests(self, created_before: float) -> int:
        def delete(conn: sqlite3.Connection) -> int:
            with _transaction(conn):
                ids = [r[0] for r in conn.execute(
                    "SELECT id FROM users WHERE roles = '[\"guest\"]' AND created_at < ?", (created_before,))]
                now = time.time()
                for user_id in ids:
                    _delete_user_rows(conn, user_id)
                    fan_out(conn, "user.deleted", event_body("user.deleted", {"userId": user_id}, now), now)
                return len(ids)

        return await self._run(delete)

    async def delete_user(self, user_id: str) -> bool:
        def delete(conn: sqlite3.Connection) -> bool:
            with _transaction(conn):
                deleted = _delete_user_rows(conn, user_id)
                if deleted:
                    now = time.time()
                    fan_out(conn, "user.deleted", event_body("user.deleted", {"userId": user_id}, now), now)
                return deleted

        return await self._run(delete)

    async def list_sessions(self, user_id: str) -> list[AuthSession]:
        rows = await self._read(lambda c: c.execute(
            "SELECT * FROM sessions WHERE user_id = ? ORDER BY created_at DESC, id", (user_id,)).fetchall())
        return [AuthSession(r["id"], r["user_id"], r["created_at"], r["expires_at"], bool(r["revoked"])) for r in rows]

    # API keys
    async def create_api_key(self, key: ApiKey, max_per_user: int) -> bool:
        def insert(conn: sqlite3.Connection) -> bool:
            with _transaction(conn):
                (count,) = conn.execute("SELECT COUNT(*) FROM api_keys WHERE user_id = ?", (key.user_id,)).fetchone()
                if count >= max_per_user:
                    return False
                conn.execute(
                    "INSERT INTO api_keys (id, user_id, name, key_hash, hint, created_at) VALUES (?,?,?,?,?,?)",
                    (key.id, key.user_id, key.name, key.key_hash, key.hint, key.created_at),
                )
                return True

        return await self._run(insert)

    async def list_api_keys(self, user_id: str) -> list[ApiKey]:
        rows = await self._read(lambda c: c.execute(
            "SELECT * FROM api_keys WHERE user_id = ? ORDER BY created_at DESC, id", (user_id,)).fetchall())
        return [_api_key(r) for r in rows]

    async def api_key_by_hash(self, key_hash: str) -> ApiKey | None:
        row = await self._one("SELECT * FROM api_keys WHERE key_hash = ?", (key_hash,))
        return _api_key(row) if row else None

    async def delete_api_key(self, user_id: str, key_id: str) -> bool:
        cursor = await self._run(lambda c: c.execute("DELETE FROM api_keys WHERE id = ? AND user_id = ?", (key_id, user_id)))
        return cursor.rowcount > 0

    async def api_key_owner(self, key_id: str) -> str | None:
        row = await self._one("SELECT user_id FROM api_keys WHERE id = ?", (key_id,))
        return str(row["user_id"]) if row else None

    async def touch_api_key(self, key_id: str, used_at: float) -> None:
        await self._run(lambda c: c.execute("UPDATE api_keys SET last_used_at = ? WHERE id = ?", (used_at, key_id)))

    # chats
    async def create_chat(self, user_id: str, title: str) -> Chat:
        now = time.time()
        chat = Chat(_new_id(), user_id, title, now, now)
        await self._run(
            lambda c: c.execute(
                "INSERT INTO chats (id, user_id, title, created_at, updated_at) VALUES (?,?,?,?,?)",
                (chat.id, user_id, title, now, now),
            )
        )
        return chat

    async def get_chat(self, user_id: str, chat_id: str) -> Chat | None:
        row = await self._one("SELECT * FROM chats WHERE id = ? AND user_id = ?", (chat_id, user_id))
        return _chat(row) if row else None

    async def list_chats(self, user_id: str, before_chat_id: str | None, limit: int) -> list[Chat]:
        def select(conn: sqlite3.Connection) -> list[Chat]:
            if before_chat_id is None:
                rows = conn.execute(
                    "SELECT * FROM chats WHERE user_id = ? ORDER BY created_at DESC, id DESC LIMIT ?", (user_id, limit)
                ).fetchall()
            else:
                rows = conn.execute(
                    "SELECT c.* FROM chats c, chats b WHERE b.id = ? AND b.user_id = ? AND c.user_id = ?"
                    " AND (c.created_at < b.created_at OR (c.created_at = b.created_at AND c.id < b.id))"
                    " ORDER BY c.created_at DESC, c.id DESC LIMIT ?",
                    (before_chat_id, user_id, user_id, limit),
                ).fetchall()
            return [_chat(r) for r in rows]

        return await self._read(select)

    async def rename_chat(self, user_id: str, chat_id: str, title: str) -> Chat | None:
        def rename(conn: sqlite3.Connection) -> Chat | None:
            with _transaction(conn):
                row = conn.execute("UPDATE chats SET title = ?, updated_at = ? WHERE id = ? AND user_id = ? RETURNING *",
                                   (title, time.time(), chat_id, user_id)).fetchone()
                return _chat(row) if row else None

        return await self._run(rename)

    async def delete_chat(self, user_id: str, chat_id: str) -> bool:
        def delete(conn: sqlite3.Connection) -> bool:
            with _transaction(conn):
                found = conn.execute("SELECT 1 FROM chats WHERE id = ? AND user_id = ?", (chat_id, user_id)).fetchone()
                if not found:
                    return False
                conn.execute("DELETE FROM messages WHERE chat_id = ?", (chat_id,))
                conn.execute("DELETE FROM chats WHERE id = ?", (chat_id,))
                return True

        return await self._run(delete)

    # messages
    async def message_owner(self, message_id: str) -> str | None:
        row = await self._one("SELECT user_id FROM messages WHERE id = ?", (message_id,))
        return row["user_id"] if row else None

    async def begin_exchange(self, exchange: Exchange) -> None:
        def write(conn: sqlite3.Connection) -> None:  # inside the savepoint _run_grouped gives it: all or nothing
            ex = exchange
            if ex.new_chat_title is not None:
                conn.execute(
                    "INSERT INTO chats (id, user_id, title, created_at, updated_at) VALUES (?,?,?,?,?)",
                    (ex.chat_id, ex.user_id, ex.new_chat_title, ex.created_at, ex.created_at),
                )
            elif not conn.execute(
                "UPDATE chats SET updated_at = ? WHERE id = ? AND user_id = ?", (ex.created_at, ex.chat_id, ex.user_id)
            ).rowcount:
                raise LookupError(f"chat {ex.chat_id} not found")
            seq = 0 if ex.new_chat_title is not None else conn.execute(  # a chat made just now has no message yet
                "SELECT COALESCE(MAX(seq), 0) FROM messages WHERE chat_id = ?", (ex.chat_id,)).fetchone()[0]
            try:
                conn.executemany(
                    "INSERT INTO messages (id, chat_id, user_id, role, content, status, seq, created_at, fence, model,"
                    " context_messages) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                    [
                        (ex.user_message_id, ex.chat_id, ex.user_id, "user", ex.content, "complete", seq + 1,
                         ex.created_at, ex.fence, None, None),
                        (ex.reply_message_id, ex.chat_id, ex.user_id, "assistant", "", "streaming", seq + 2,
                         ex.created_at, ex.fence, ex.model or None, ex.context_messages),
                    ],
                )
            except sqlite3.IntegrityError as exc:
                raise DuplicateError(ex.reply_message_id) from exc

        await self._run_grouped(write)

    async def get_message(self, user_id: str, message_id: str) -> Message | None:
        row = await self._one("SELECT * FROM messages WHERE id = ? AND user_id = ?", (message_id, user_id))
        return _message(row) if row else None

    async def list_messages(self, user_id: str, chat_id: str) -> list[Message]:
        rows = await self._read(
            lambda c: c.execute(
                "SELECT * FROM messages WHERE chat_id = ? AND user_id = ? ORDER BY created_at, seq", (chat_id, user_id)
            ).fetchall()
        )
        return [_message(r) for r in rows]

    async def recent_messages(self, user_id: str, chat_id: str, limit: int,
                              before_id: str | None = None) -> list[Message]:
        args: tuple[str | int, ...] = (chat_id, user_id, limit)
        sql = _RECENT_SQL
        if before_id is not None:
            sql, args = _OLDER_SQL, (chat_id, user_id, before_id, chat_id, limit)
        rows = await self._read(lambda c: c.execute(sql, args).fetchall())
        return [_message(r) for r in rows]

    async def checkpoint_reply(self, message_id: str, content: str, fence: int = 0) -> bool:
        def write(conn: sqlite3.Connection) -> bool:
            return conn.execute(
                "UPDATE messages SET content = ?, fence = ? WHERE id = ? AND status = 'streaming' AND fence <= ?",
                (content, fence, message_id, fence),
            ).rowcount > 0

        return await self._run_grouped(write)

    async def finish_reply(
        self,
        message_id: str,
        content: str,
        status: str,
        finish_reason: str | None,
        event_count: int,
        fence: int = 0,
        usage: tuple[int, int] | None = None,
        receipt: Receipt | None = None,
        sections: Sequence[tuple[str, int]] = (),
        model: str | None = None,
        webhook: tuple[str, str] | None = None,
    ) -> bool:
        tokens_in, tokens_out = usage if usage is not None else (None, None)
        stopped = json.dumps(dataclasses.asdict(receipt)) if receipt is not None else None
        agents = encode_sections(sections) if sections else None

        def write(conn: sqlite3.Connection) -> bool:
            finished = conn.execute(
                "UPDATE messages SET content = ?, status = ?, finish_reason = ?, event_count = ?, fence = ?,"
                " input_tokens = ?, output_tokens = ?, receipt = ?, sections = ?, model = COALESCE(?, model)"
                " WHERE id = ? AND fence <= ?",
                (content, status, finish_reason, event_count, fence, tokens_in, tokens_out, stopped, agents, model,
                 message_id, fence),
            ).rowcount > 0
            if finished and webhook is not None:
                fan_out(conn, webhook[0], webhook[1], time.time())
            return finished

        return await self._run_grouped(write)

    async def list_streaming_replies(self, limit: int) -> list[Message]:
        rows = await self._read(
            lambda c: c.execute(
                "SELECT * FROM messages WHERE status = 'streaming' ORDER BY created_at LIMIT ?", (limit,)
            ).fetchall()
        )
        return [_message(r) for r in rows]

    async def interrupt_reply(self, message_id: str, content: str | None, event_count: int) -> bool:
        def write(conn: sqlite3.Connection) -> bool:
            with _transaction(conn):
                row = conn.execute(
                    "UPDATE messages SET status = 'error', finish_reason = 'interrupted', event_count = ?,"
                    " content = COALESCE(?, content) WHERE id = ? AND status = 'streaming'"
                    " RETURNING chat_id, user_id, model",
                    (event_count, content, message_id),
                ).fetchone()
                if row is not None:
                    now = time.time()
                    fan_out(conn, *reply_event(message_id, row[0], row[1], row[2], "error", "interrupted", None, now),
                            now)
            return row is not None

        return await self._run(write)
