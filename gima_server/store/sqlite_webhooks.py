"""Outgoing webhooks in the SQLite store (sqlite_schema step 6): endpoints, and the deliveries a fact fans out to
in its own transaction (ADR 23)."""

from __future__ import annotations

import sqlite3
from typing import Any, Callable, Collection

from ..webhooks.model import Delivery, Endpoint
from .sqlite_util import transaction

SCHEMA = (
    """CREATE TABLE IF NOT EXISTS webhook_endpoints (
        id TEXT PRIMARY KEY,
        url TEXT NOT NULL,
        secret TEXT NOT NULL,
        events TEXT NOT NULL,
        include_content INTEGER NOT NULL DEFAULT 0,
        created_at REAL NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS webhook_deliveries (
        id TEXT PRIMARY KEY,
        endpoint_id TEXT NOT NULL REFERENCES webhook_endpoints(id) ON DELETE CASCADE,
        type TEXT NOT NULL,
        body TEXT NOT NULL,
        created_at REAL NOT NULL,
        next_at REAL NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        status TEXT NOT NULL DEFAULT 'pending',
        lease_until REAL NOT NULL DEFAULT 0,
        last_status INTEGER,
        last_error TEXT
    )""",
    "CREATE INDEX IF NOT EXISTS webhook_deliveries_due ON webhook_deliveries(next_at) WHERE status = 'pending'",
    "CREATE INDEX IF NOT EXISTS webhook_deliveries_by_endpoint ON webhook_deliveries(endpoint_id, created_at)",
)


def fan_out(conn: sqlite3.Connection, event_type: str, body: str, now: float) -> None:
    """A delivery per endpoint that takes this event type, inside the caller's transaction (none: nothing written)."""
    conn.execute(
        "INSERT INTO webhook_deliveries (id, endpoint_id, type, body, created_at, next_at)"
        " SELECT 'msg_' || lower(hex(randomblob(12))), id, ?, ?, ?, ? FROM webhook_endpoints WHERE instr(events, ?) > 0",
        (event_type, body, now, now, f",{event_type},"))


def _endpoint(row: sqlite3.Row) -> Endpoint:
    return Endpoint(row["id"], row["url"], row["secret"], tuple(e for e in row["events"].split(",") if e),
                    bool(row["include_content"]), row["created_at"])


def _delivery(row: sqlite3.Row) -> Delivery:
    keys = row.keys()
    return Delivery(row["id"], row["endpoint_id"], row["type"], row["body"], row["created_at"], row["attempts"],
                    row["status"], row["next_at"], row["last_status"], row["last_error"],
                    row["url"] if "url" in keys else "", row["secret"] if "secret" in keys else "",
                    bool(row["include_content"]) if "include_content" in keys else False)


class SqliteWebhooksMixin:
    _run: Callable[..., Any]
    _read: Callable[..., Any]

    async def save_webhook_endpoint(self, endpoint: Endpoint) -> None:
        await self._run(lambda c: c.execute(
            "INSERT INTO webhook_endpoints (id, url, secret, events, include_content, created_at) VALUES (?,?,?,?,?,?)"
            " ON CONFLICT (id) DO UPDATE SET url = excluded.url, secret = excluded.secret, events = excluded.events,"
            " include_content = excluded.include_content",
            (endpoint.id, endpoint.url, endpoint.secret, f",{','.join(endpoint.events)},", int(endpoint.include_content),
             endpoint.created_at)))

    async def list_webhook_endpoints(self) -> list[Endpoint]:
        rows = await self._read(lambda c: c.execute("SELECT * FROM webhook_endpoints ORDER BY created_at, id").fetchall())
        return [_endpoint(r) for r in rows]

    async def remove_webhook_endpoint(self, endpoint_id: str) -> bool:
        removed: bool = await self._run(lambda c: c.execute(
            "DELETE FROM webhook_endpoints WHERE id = ?", (endpoint_id,)).rowcount > 0)
        return removed

    async def claim_webhook_deliveries(self, now: float, lease_s: float, limit: int,
                                       skip_endpoints: Collection[str] = ()) -> list[Delivery]:
        skipped = tuple(skip_endpoints)
        not_in = f" AND d.endpoint_id NOT IN ({','.join('?' * len(skipped))})" if skipped else ""

        def claim(conn: sqlite3.Connection) -> list[sqlite3.Row]:
            with transaction(conn):
                rows = conn.execute(
                    "SELECT d.*, e.url, e.secret, e.include_content FROM webhook_deliveries d"
                    " JOIN webhook_endpoints e ON e.id = d.endpoint_id"
                    f" WHERE d.status = 'pending' AND d.next_at <= ? AND d.lease_until <= ?{not_in}"
                    " ORDER BY d.next_at LIMIT ?",
                    (now, now, *skipped, limit)).fetchall()
                conn.executemany("UPDATE webhook_deliveries SET lease_until = ? WHERE id = ?",
                                 [(now + lease_s, r["id"]) for r in rows])
            return rows

        return [_delivery(r) for r in await self._run(claim)]

    async def record_webhook_try(self, delivery_id: str, delivered: bool, next_at: float | None,
                                 last_status: int | None, last_error: str | None) -> None:
        status = "delivered" if delivered else ("pending" if next_at is not None else "failed")
        await self._run(lambda c: c.execute(
            "UPDATE webhook_deliveries SET attempts = attempts + 1, status = ?, next_at = COALESCE(?, next_at),"
            " lease_until = 0, last_status = ?, last_error = ? WHERE id = ?",
            (status, next_at, last_status, last_error, delivery_id)))

    async def count_pending_webhook_deliveries(self) -> int:
        row = await self._read(lambda c: c.execute(
            "SELECT count(*) FROM webhook_deliveries WHERE status = 'pending'").fetchone())
        return int(row[0])

    async def prune_webhook_deliveries(self, created_before: float, limit: int) -> int:
        # Oldest rows first in rowid order, so the scan stops at the limit instead of reading the whole outbox.
        deleted: int = await self._run(lambda c: c.execute(
            "DELETE FROM webhook_deliveries WHERE rowid IN (SELECT rowid FROM webhook_deliveries"
            " WHERE status != 'pending' AND created_at < ? LIMIT ?)", (created_before, limit)).rowcount)
        return deleted

    async def list_webhook_deliveries(self, endpoint_id: str, limit: int) -> list[Delivery]:
        rows = await self._read(lambda c: c.execute(
            "SELECT * FROM webhook_deliveries WHERE endpoint_id = ? ORDER BY created_at DESC, id LIMIT ?",
            (endpoint_id, limit)).fetchall())
        return [_delivery(r) for r in rows]
