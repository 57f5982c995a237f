"""PostgreSQL store on asyncpg (ADR 18), selected by GIMA_STORE_URL=postgresql://...

Every call takes a connection from one pool with a bounded wait; a lost connection, a server that is down or
shutting down, a full disk or a read-only server (a failover in progress) is StoreUnavailable, and whatever
the call wrote is rolled back by PostgreSQL itself (each write is one statement or one transaction).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import time
from dataclasses import dataclass
from typing import Any, AsyncIterator, Awaitable, Callable, Iterator, Sequence, TypeVar

import asyncpg

from ..apikeys.model import ApiKey
from ..streams.snapshot import decode_sections, encode_sections
from ..webhooks.model import event_body, reply_event
from . import postgres_schema
from .base import AuthSession, Chat, DuplicateError, Exchange, Message, Receipt, SearchHit, StoreUnavailable, User
from .postgres_batch import CheckpointBatcher, LookupBatcher
from .postgres_migration import PostgresMigrationMixin
from .postgres_rows import PostgresRowsMixin
from .postgres_text import fold, storable
from .postgres_vectors import PostgresVectorsMixin
from .postgres_webhooks import PostgresWebhooksMixin, fan_out
from .sqlite_util import new_id as _new_id

T = TypeVar("T")

# Errors of reaching the server or of its state, not of the statement: the caller may simply try again later.
_FAULTS = (
    asyncpg.exceptions.PostgresConnectionError,  # class 08: lost or refused connection
    asyncpg.exceptions.InsufficientResourcesError,  # class 53: disk full, out of memory, too many connections
    asyncpg.exceptions.OperatorInterventionError,  # class 57: shutting down, starting up, statement cancelled
    asyncpg.exceptions.ReadOnlySQLTransactionError,  # a replica during a failover
    asyncpg.exceptions.TransactionRollbackError,  # serialization failure, deadlock: retry
    OSError,
    TimeoutError,  # no free connection within the pool's wait, or a statement past its timeout
)


@contextlib.contextmanager
def _unavailable_on_fault() -> Iterator[None]:
    try:
        yield
    except _FAULTS as exc:
        raise StoreUnavailable(type(exc).__name__) from exc
    except asyncpg.exceptions.InterfaceError as exc:
        if "connection" not in str(exc).lower():  # misuse of the driver is a bug, not an outage
            raise
        raise StoreUnavailable(type(exc).__name__) from exc


@dataclass(frozen=True, slots=True)
class PostgresPool:
    max_size: int = 20
    min_size: int = 1
    timeout_s: float = 10.0  # waiting for a free connection, and for one statement


def _user(r: asyncpg.Record) -> User:
    return User(r["id"], r["email"], r["name"], r["password_hash"], tuple(r["roles"]), r["created_at"], r["plan"])


def _session(r: asyncpg.Record) -> AuthSession:
    return AuthSession(r["id"], r["user_id"], r["created_at"], r["expires_at"], r["revoked"])


def _api_key(r: asyncpg.Record) -> ApiKey:
    return ApiKey(r["id"], r["user_id"], r["name"], r["key_hash"], r["hint"], r["created_at"], r["last_used_at"])


def _chat(r: asyncpg.Record) -> Chat:
    return Chat(r["id"], r["user_id"], r["title"], r["created_at"], r["updated_at"])


# $1 user message id, $2 reply id, $3 chat, $4 user, $5 content, $6 time, $7 fence, $8 the new chat's title
# (NULL: the chat must exist and be the user's), $9 the model asked to answer and $10 how many earlier messages
# its request carried (the reply's row only). The user
# message waits for the search index like every finished one (index_pending). The exchange's messages take the next
# two numbers of the chat (the order within a time; exchanges are ordered by their time).
_EXCHANGE_SQL = """
WITH made AS (
    INSERT INTO chats (id, user_id, title, created_at, updated_at)
    SELECT $3, $4, $8::text, $6, $6 WHERE $8::text IS NOT NULL RETURNING id
), touched AS (
    UPDATE chats SET updated_at = $6 WHERE id = $3 AND user_id = $4 AND $8::text IS NULL RETURNING id
), chat AS (
    SELECT id FROM made UNION ALL SELECT id FROM touched
), last AS (
    SELECT COALESCE(MAX(seq), 0) AS n FROM messages WHERE chat_id = $3
)
INSERT INTO messages (id, chat_id, user_id, role, content, status, seq, created_at, fence, search, model,
                      context_messages)
SELECT m.id, chat.id, $4, m.role, m.content, m.status, last.n + m.step, $6, $7, m.search, m.model, m.context
FROM chat, last, (VALUES ($1, 'user', $5, 'complete', 1, NULL::tsvector, NULL::text, NULL::integer),
                         ($2, 'assistant', '', 'streaming', 2, NULL::tsvector, $9::text, $10::integer))
                 AS m(id, role, content, status, step, search, model, context)
"""

# One statement, one round trip, as before webhooks: the final write, and (when $12, a webhook event type, is set)
# a delivery per endpoint that takes it, only if the write happened.
_FINISH_SQL = """
WITH done AS (
    UPDATE messages SET content = $1, status = $2, finish_reason = $3, event_count = $4, fence = $5, input_tokens = $6,
        output_tokens = $7, receipt = $8, sections = $9, search = NULL, model = COALESCE($11, model)
    WHERE id = $10 AND fence <= $5 RETURNING id
), queued AS (
    INSERT INTO webhook_deliveries (id, endpoint_id, type, body, created_at, next_at)
    SELECT 'msg_' || replace(gen_random_uuid()::text, '-', ''), e.id, $12::text, $13::text, $14, $14
    FROM webhook_endpoints e, done WHERE $12::text IS NOT NULL AND strpos(e.events, ',' || $12::text || ',') > 0
)
SELECT count(*) FROM done
"""

_MESSAGE_COLUMNS = ("id, chat_id, user_id, role, content, status, created_at, finish_reason, event_count, input_tokens,"
                    " output_tokens, receipt, sections, model, context_messages")


def _message(r: asyncpg.Record) -> Message:
    return Message(
        r["id"], r["chat_id"], r["user_id"], r["role"], r["content"], r["status"], r["created_at"], r["finish_reason"],
        r["event_count"], r["input_tokens"], r["output_tokens"],
        Receipt(**json.loads(r["receipt"])) if r["receipt"] else None, tuple(decode_sections(r["sections"] or "")),
        r["model"], r["context_messages"],
    )


class PostgresStore(PostgresMigrationMixin, PostgresRowsMixin, PostgresVectorsMixin, PostgresWebhooksMixin):
    def __init__(self, url: str, pool: PostgresPool = PostgresPool()) -> None:
        self._url = url
        self._limits = pool
        self._pool: asyncpg.Pool | None = None
        # Checkpoints only: commits acknowledged before they reach the disk (synchronous_commit off). A checkpoint
        # lost in a crash of PostgreSQL costs nothing (the final write carries the whole text), and not waiting
        # for a flush per checkpoint keeps them off the disk's queue of durable writes.
        self._relaxed: asyncpg.Pool | None = None
        self._checkpoints = CheckpointBatcher(self._write_checkpoints)
        self._sign_ins: LookupBatcher[tuple[AuthSession, User]] = LookupBatcher(self._sessions_with_users)

    @contextlib.asynccontextmanager
    async def _conn(self) -> AsyncIterator[asyncpg.Connection]:
        assert self._pool is not None, "store is not open"
        with _unavailable_on_fault():
            async with self._pool.acquire(timeout=self._limits.timeout_s) as conn:
                yield conn

    async def _call(self, fn: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
        async with self._conn() as conn:
            return await fn(conn)

    async def _in_transaction(self, fn: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
        async with self._conn() as conn, conn.transaction():
            return await fn(conn)

    async def _read(self, fn: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
        """A read, tried once more on a fresh connection when the pooled one turns out to be dead (the server
        restarted, or ended idle sessions): safe for a read, where a write's outcome would be unknown."""
        try:
            return await self._call(fn)
        except StoreUnavailable as exc:
            if not isinstance(exc.__cause__, (asyncpg.exceptions.PostgresConnectionError, asyncpg.exceptions.InterfaceError)):
                raise
        return await self._call(fn)

    async def _fetchrow(self, sql: str, *args: Any) -> asyncpg.Record | None:
        row: asyncpg.Record | None = await self._read(lambda conn: conn.fetchrow(sql, *args))
        return row

    async def _fetch(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        rows: list[asyncpg.Record] = await self._read(lambda conn: conn.fetch(sql, *args))
        return rows

    async def _execute(self, sql: str, *args: Any) -> int:
        """Run one statement; how many rows it touched."""
        async with self._conn() as conn:
            status: str = await conn.execute(sql, *args)
        return int(status.rsplit(" ", 1)[-1]) if status[-1:].isdigit() else 0

    @contextlib.asynccontextmanager
    async def _one_connection(self) -> AsyncIterator[asyncpg.Connection]:
        """A connection of its own, outside the pool (schema work, before the pool exists)."""
        with _unavailable_on_fault():
            conn = await asyncpg.connect(self._url, timeout=self._limits.timeout_s)
        try:
            yield conn
        finally:
            await conn.close()

    async def schema_version(self) -> int:
        async with self._one_connection() as conn:
            return await postgres_schema.version(conn)

    async def pending_steps(self) -> list[tuple[int, str]]:
        """The numbered steps this database lacks; SchemaError when it is newer than this code."""
        async with self._one_connection() as conn:
            return [(step.number, step.what) for step in await postgres_schema.pending(conn, self.where)]

    async def open(self) -> None:
        async with self._one_connection() as conn:
            with _unavailable_on_fault():
                await postgres_schema.upgrade(conn, self.where)  # refuses a newer database before changing anything
        with _unavailable_on_fault():
            self._pool = await asyncpg.create_pool(
                self._url, min_size=self._limits.min_size, max_size=self._limits.max_size,
                command_timeout=self._limits.timeout_s, timeout=self._limits.timeout_s,
                max_inactive_connection_lifetime=300.0,
            )
            self._relaxed = await asyncpg.create_pool(
                self._url, min_size=1, max_size=2,
                command_timeout=self._limits.timeout_s, timeout=self._limits.timeout_s,
                max_inactive_connection_lifetime=300.0, server_settings={"synchronous_commit": "off"},
            )

    @property
    def where(self) -> str:
        """The database's address without its credentials, for messages."""
        tail = self._url.rsplit("@", 1)[-1]
        return f"postgresql://{tail.split('://', 1)[-1]}"

    async def close(self) -> None:
        await self._checkpoints.close()
        await self._sign_ins.close()
        for name in ("_relaxed", "_pool"):
            pool = getattr(self, name)
            if pool is not None:
                setattr(self, name, None)
                await pool.close()

    async def ping(self) -> None:
        await self._fetchrow("SELECT 1")

    # users
    async def create_user(self, email: str, password_hash: str, name: str, roles: Sequence[str]) -> User:
        user = User(_new_id(), email, name, password_hash, tuple(roles), time.time())
        async def insert(conn: asyncpg.Connection) -> None:
            await conn.execute(
                "INSERT INTO users (id, email, name, password_hash, roles, created_at) VALUES ($1,$2,$3,$4,$5,$6)",
                user.id, email, name, password_hash, list(roles), user.created_at)
            await fan_out(conn, "user.created", event_body("user.created", user.webhook_data(), user.created_at),
                          user.created_at)

        try:
            await self._in_transaction(insert)
        except asyncpg.exceptions.UniqueViolationError as exc:
            raise DuplicateError(email) from exc
        return user

    async def get_user(self, user_id: str) -> User | None:
        row = await self._fetchrow("SELECT * FROM users WHERE id = $1", user_id)
        return _user(row) if row else None

    async def get_user_by_email(self, email: str) -> User | None:
        row = await self._fetchrow("SELECT * FROM users WHERE email = $1", email)
        return _user(row) if row else None

    async def set_roles(self, user_id: str, roles: Sequence[str]) -> User | None:
        row = await self._call(lambda conn: conn.fetchrow("UPDATE users SET roles = $1 WHERE id = $2 RETURNING *",
                                                          list(roles), user_id))
        return _user(row) if row else None

    async def set_plan_from_event(self, event_id: str, user_id: str | None, plan: str | None, at: float) -> bool | None:
        async def write(conn: asyncpg.Connection) -> bool | None:
            status = await conn.execute("INSERT INTO stripe_events (id, received_at) VALUES ($1, $2)"
                                        " ON CONFLICT DO NOTHING", event_id, time.time())
            if status.endswith(" 0"):
                return None
            if user_id is None:
                return False
            changed = await conn.execute("UPDATE users SET plan = $1, plan_at = $2 WHERE id = $3"
                                         " AND (plan_at IS NULL OR plan_at <= $2)", plan, at, user_id)
            return not changed.endswith(" 0")

        return await self._in_transaction(write)

    async def set_plan(self, user_id: str, plan: str | None, at: float) -> bool:
        return await self._execute("UPDATE users SET plan = $1, plan_at = $2 WHERE id = $3"
                                   " AND (plan_at IS NULL OR plan_at <= $2)", plan, at, user_id) > 0

    # sessions
    async def create_session(self, user_id: str, ttl_s: float) -> AuthSession:
        now = time.time()
        session = AuthSession(_new_id(), user_id, now, now + ttl_s, False)
        await self._execute("INSERT INTO sessions (id, user_id, created_at, expires_at) VALUES ($1,$2,$3,$4)",
                            session.id, user_id, session.created_at, session.expires_at)
        return session

    async def get_session(self, session_id: str) -> AuthSession | None:
        row = await self._fetchrow("SELECT * FROM sessions WHERE id = $1", session_id)
        return _session(row) if row else None

    async def get_session_user(self, session_id: str) -> tuple[AuthSession, User] | None:
        """A session with its user, asked together with the other sign-ins waiting (postgres_batch)."""
        return await self._sign_ins.get(session_id)

    async def _sessions_with_users(self, session_ids: list[str]) -> dict[str, tuple[AuthSession, User]]:
        rows = await self._fetch(
            "SELECT s.id AS sid, s.created_at AS s_created, s.expires_at, s.revoked, u.* FROM sessions s"
            " JOIN users u ON u.id = s.user_id WHERE s.id = ANY($1::text[])", session_ids)
        return {row["sid"]: (AuthSession(row["sid"], row["id"], row["s_created"], row["expires_at"], row["revoked"]),
                             _user(row)) for row in rows}

    async def revoke_session(self, session_id: str) -> None:
        await self._execute("UPDATE sessions SET revoked = TRUE WHERE id = $1", session_id)

    async def delete_guests(self, created_before: float) -> int:
        async def delete(conn: asyncpg.Connection) -> int:
            ids = [r["id"] for r in await conn.fetch(
                "SELECT id FROM users WHERE roles = ARRAY['guest']::text[] AND created_at < $1 FOR UPDATE", created_before)]
            await _delete_users(conn, ids)
            now = time.time()
            for user_id in ids:
                await fan_out(conn, "user.deleted", event_body("user.deleted", {"userId": user_id}, now), now)
            return len(ids)

        return await self._in_transaction(delete)

    async def delete_user(self, user_id: str) -> bool:
        async def delete(conn: asyncpg.Connection) -> bool:
            if not await _delete_users(conn, [user_id]):
                return False
            now = time.time()
            await fan_out(conn, "user.deleted", event_body("user.deleted", {"userId": user_id}, now), now)
            return True

        return await self._in_transaction(delete)

    async def list_sessions(self, user_id: str) -> list[AuthSession]:
        rows = await self._fetch("SELECT * FROM sessions WHERE user_id = $1 ORDER BY created_at DESC, id", user_id)
        return [_session(r) for r in rows]

    # API keys
    async def create_api_key(self, key: ApiKey, max_per_user: int) -> bool:
        async def insert(conn: asyncpg.Connection) -> bool:
            await conn.execute("SELECT 1 FROM users WHERE id = $1 FOR UPDATE", key.user_id)  # one count at a time
            if await conn.fetchval("SELECT COUNT(*) FROM api_keys WHERE user_id = $1", key.user_id) >= max_per_user:
                return False
            await conn.execute(
                "INSERT INTO api_keys (id, user_id, name, key_hash, hint, created_at) VALUES ($1,$2,$3,$4,$5,$6)",
                key.id, key.user_id, key.name, key.key_hash, key.hint, key.created_at)
            return True

        return await self._in_transaction(insert)

    async def list_api_keys(self, user_id: str) -> list[ApiKey]:
        rows = await self._fetch("SELECT * FROM api_keys WHERE user_id = $1 ORDER BY created_at DESC, id", user_id)
        return [_api_key(r) for r in rows]

    async def api_key_by_hash(self, key_hash: str) -> ApiKey | None:
        row = await self._fetchrow("SELECT * FROM api_keys WHERE key_hash = $1", key_hash)
        return _api_key(row) if row else None

    async def delete_api_key(self, user_id: str, key_id: str) -> bool:
        return await self._execute("DELETE FROM api_keys WHERE id = $1 AND user_id = $2", key_id, user_id) > 0

    async def api_key_owner(self, key_id: str) -> str | None:
        row = await self._fetchrow("SELECT user_id FROM api_keys WHERE id = $1", key_id)
        return str(row["user_id"]) if row else None

    async def touch_api_key(self, key_id: str, used_at: float) -> None:
        await self._execute("UPDATE api_keys SET last_used_at = $1 WHERE id = $2", used_at, key_id)

    # chats
    async def create_chat(self, user_id: str, title: str) -> Chat:
        now = time.time()
        chat = Chat(_new_id(), user_id, storable(title), now, now)
        await self._execute("INSERT INTO chats (id, user_id, title, created_at, updated_at) VALUES ($1,$2,$3,$4,$5)",
                            chat.id, user_id, chat.title, now, now)
        return chat

    async def get_chat(self, user_id: str, chat_id: str) -> Chat | None:
        row = await self._fetchrow("SELECT * FROM chats WHERE id = $1 AND user_id = $2", chat_id, user_id)
        return _chat(row) if row else None

    async def list_chats(self, user_id: str, before_chat_id: str | None, limit: int) -> list[Chat]:
        if before_chat_id is None:
            rows = await self._fetch(
                "SELECT * FROM chats WHERE user_id = $1 ORDER BY created_at DESC, id DESC LIMIT $2", user_id, limit)
        else:
            rows = await self._fetch(
                "SELECT c.* FROM chats c, chats b WHERE b.id = $1 AND b.user_id = $2 AND c.user_id = $2"
                " AND (c.created_at, c.id) < (b.created_at, b.id) ORDER BY c.created_at DESC, c.id DESC LIMIT $3",
                before_chat_id, user_id, limit)
        return [_chat(r) for r in rows]

    async def rename_chat(self, user_id: str, chat_id: str, title: str) -> Chat | None:
        row = await self._fetchrow("UPDATE chats SET title = $3, updated_at = $4 WHERE id = $1 AND user_id = $2 RETURNING *",
                                   chat_id, user_id, storable(title), time.time())
        return _chat(row) if row else None

    async def delete_chat(self, user_id: str, chat_id: str) -> bool:
        return await self._execute("DELETE FROM chats WHERE id = $1 AND user_id = $2", chat_id, user_id) > 0

    # messages
    async def message_owner(self, message_id: str) -> str | None:
        row = await self._fetchrow("SELECT user_id FROM messages WHERE id = $1", message_id)
        return str(row["user_id"]) if row else None

    async def begin_exchange(self, exchange: Exchange) -> None:
        ex = exchange
        content = storable(ex.content)
        # One statement, so one round trip and one commit (a thousand replies starting at once queued behind
        # five round trips each before): the chat is made or touched in a CTE; nothing is inserted when it is
        # neither (missing or another user's), and a duplicate id fails the whole statement.
        try:
            status = await self._call(lambda conn: conn.execute(_EXCHANGE_SQL,
                ex.user_message_id, ex.reply_message_id, ex.chat_id, ex.user_id, content, ex.created_at, ex.fence,
                storable(ex.new_chat_title) if ex.new_chat_title is not None else None, ex.model or None,
                ex.context_messages))
        except asyncpg.exceptions.UniqueViolationError as exc:
            raise DuplicateError(ex.reply_message_id) from exc
        except asyncpg.exceptions.ForeignKeyViolationError as exc:
            raise LookupError(f"user {ex.user_id} not found") from exc
        if status.rsplit(" ", 1)[-1] != "2":
            raise LookupError(f"chat {ex.chat_id} not found")

    async def get_message(self, user_id: str, message_id: str) -> Message | None:
        row = await self._fetchrow(f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE id = $1 AND user_id = $2",
                                   message_id, user_id)
        return _message(row) if row else None

    async def list_messages(self, user_id: str, chat_id: str) -> list[Message]:
        rows = await self._fetch(f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE chat_id = $1 AND user_id = $2"
                                 " ORDER BY created_at, seq", chat_id, user_id)
        return [_message(r) for r in rows]

    async def recent_messages(self, user_id: str, chat_id: str, limit: int,
                              before_id: str | None = None) -> list[Message]:
        if before_id is None:
            rows = await self._fetch(f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE chat_id = $1 AND user_id = $2"
                                     " ORDER BY created_at DESC, seq DESC LIMIT $3", chat_id, user_id, limit)
        else:
            rows = await self._fetch(f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE chat_id = $1 AND user_id = $2"
                                     " AND (created_at, seq) < (SELECT created_at, seq FROM messages WHERE id = $3"
                                     " AND chat_id = $1) ORDER BY created_at DESC, seq DESC LIMIT $4",
                                     chat_id, user_id, before_id, limit)
        return [_message(r) for r in rows]

    async def checkpoint_reply(self, message_id: str, content: str, fence: int = 0) -> bool:
        return await self._checkpoints.submit(message_id, storable(content), fence)

    async def _write_checkpoints(self, rows: list[tuple[str, str, int]]) -> set[str]:
        """One statement for every checkpoint waiting (postgres_batch); the ids it updated."""
        assert self._relaxed is not None, "store is not open"
        ids, texts, fences = (list(column) for column in zip(*rows, strict=True))
        with _unavailable_on_fault():
            async with self._relaxed.acquire(timeout=self._limits.timeout_s) as conn:
                updated = await conn.fetch(
                    "UPDATE messages m SET content = v.content, fence = v.fence"
                    " FROM unnest($1::text[], $2::text[], $3::bigint[]) AS v(id, content, fence)"
                    " WHERE m.id = v.id AND m.status = 'streaming' AND m.fence <= v.fence RETURNING m.id",
                    ids, texts, fences)
        return {row["id"] for row in updated}

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
        hook_type, hook_body = webhook if webhook is not None else (None, None)
        finished = await self._call(lambda conn: conn.fetchval(
            _FINISH_SQL, storable(content), status, finish_reason, event_count, fence, tokens_in, tokens_out, stopped,
            agents, message_id, model, hook_type, hook_body, time.time()))
        return bool(finished)

    async def index_pending(self, limit: int = 500) -> int:
        """Give up to `limit` finished messages their search words (the app calls it when not busy, and a search
        first): tokenizing and the GIN insert stay off a reply's start and end (queued as search IS NULL)."""
        rows = await self._fetch("SELECT id, content FROM messages WHERE search IS NULL AND status <> 'streaming'"
                                 " LIMIT $1", limit)
        if rows:
            await self._call(lambda conn: conn.execute(
                "UPDATE messages m SET search = to_tsvector('simple', v.words)"
                " FROM unnest($1::text[], $2::text[]) AS v(id, words) WHERE m.id = v.id AND m.search IS NULL",
                [r["id"] for r in rows], [fold(r["content"]) for r in rows]))
        return len(rows)

    async def search_messages(self, user_id: str, terms: Sequence[str], limit: int, offset: int) -> list[SearchHit]:
        while await self.index_pending(2000):  # a search sees every finished message, also those just queued
            pass
        # plainto_tsquery reads its text with the documents' parser and ANDs every word: no query syntax at all.
        rows = await self._fetch(
            "SELECT m.id, m.chat_id, m.role, m.created_at, c.title,"
            " ts_headline('simple', m.content, q, 'StartSel=\u0002, StopSel=\u0003, MaxWords=16, MinWords=6,"
            " FragmentDelimiter=…, MaxFragments=1') AS snip"
            " FROM messages m JOIN chats c ON c.id = m.chat_id, plainto_tsquery('simple', $1) q"
            " WHERE m.search @@ q AND m.user_id = $2"
            " ORDER BY ts_rank(m.search, q) DESC, m.created_at DESC LIMIT $3 OFFSET $4",
            fold(" ".join(terms)), user_id, limit, offset)
        return [SearchHit(r["id"], r["chat_id"], r["title"], r["role"], r["created_at"], r["snip"]) for r in rows]

    async def list_streaming_replies(self, limit: int) -> list[Message]:
        rows = await self._fetch(f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE status = 'streaming'"
                                 " ORDER BY created_at LIMIT $1", limit)
        return [_message(r) for r in rows]

    async def interrupt_reply(self, message_id: str, content: str | None, event_count: int) -> bool:
        async def write(conn: asyncpg.Connection) -> bool:
            kept = await conn.fetchval("SELECT content FROM messages WHERE id = $1 AND status = 'streaming' FOR UPDATE",
                                       message_id)
            if kept is None:
                return False
            text = storable(content) if content is not None else kept
            row = await conn.fetchrow(
                "UPDATE messages SET status = 'error', finish_reason = 'interrupted', event_count = $1, content = $2,"
                " search = NULL WHERE id = $3 RETURNING chat_id, user_id, model", event_count, text, message_id)
            now = time.time()
            await fan_out(conn, *reply_event(message_id, row["chat_id"], row["user_id"], row["model"], "error",
                                             "interrupted", None, now), now)
            return True

        return await self._in_transaction(write)


async def _delete_users(conn: asyncpg.Connection, ids: list[str]) -> int:
    """Everything of these users, inside the caller's transaction (the tables without a foreign key by hand)."""
    if not ids:
        return 0
    await conn.execute("DELETE FROM imported_conversations WHERE user_id = ANY($1::text[])", ids)
    await conn.execute("DELETE FROM migration_batches WHERE job_id IN"
                       " (SELECT id FROM migration_jobs WHERE user_id = ANY($1::text[]))", ids)
    await conn.execute("DELETE FROM migration_jobs WHERE user_id = ANY($1::text[])", ids)
    status: str = await conn.execute("DELETE FROM users WHERE id = ANY($1::text[])", ids)  # the rest cascades
    return int(status.rsplit(" ", 1)[-1])
