"""Outgoing webhooks in the PostgreSQL store (postgres_schema step 7): endpoints, and the deliveries a fact fans out
to in its own statement or transaction (ADR 23). Claims skip rows another process holds (FOR UPDATE SKIP LOCKED)."""

from __future__ import annotations

from typing import Any, Awaitable, Callable, Collection

import asyncpg

from ..webhooks.model import Delivery, Endpoint

SCHEMA = (
    """CREATE TABLE webhook_endpoints (
        id text PRIMARY KEY,
        url text NOT NULL,
        secret text NOT NULL,
        events text NOT NULL,
        include_content boolean NOT NULL DEFAULT false,
        created_at double precision NOT NULL
    )""",
    """CREATE TABLE webhook_deliveries (
        id text PRIMARY KEY,
        endpoint_id text NOT NULL REFERENCES webhook_endpoints(id) ON DELETE CASCADE,
        type text NOT NULL,
        body text NOT NULL,
        created_at double precision NOT NULL,
        next_at double precision NOT NULL,
        attempts integer NOT NULL DEFAULT 0,
        status text NOT NULL DEFAULT 'pending',
        lease_until double precision NOT NULL DEFAULT 0,
        last_status integer,
        last_error text
    )""",
    "CREATE INDEX webhook_deliveries_due ON webhook_deliveries(next_at) WHERE status = 'pending'",
    "CREATE INDEX webhook_deliveries_by_endpoint ON webhook_deliveries(endpoint_id, created_at)",
)

# $1 type, $2 body, $3 now: a delivery per endpoint that takes the type (gen_random_uuid: PostgreSQL 13+).
FAN_OUT_SQL = ("INSERT INTO webhook_deliveries (id, endpoint_id, type, body, created_at, next_at)"
               " SELECT 'msg_' || replace(gen_random_uuid()::text, '-', ''), id, $1, $2, $3, $3 FROM webhook_endpoints"
               " WHERE strpos(events, ',' || $1 || ',') > 0")


async def fan_out(conn: asyncpg.Connection, event_type: str, body: str, now: float) -> None:
    await conn.execute(FAN_OUT_SQL, event_type, body, now)


def _endpoint(r: asyncpg.Record) -> Endpoint:
    return Endpoint(r["id"], r["url"], r["secret"], tuple(e for e in r["events"].split(",") if e),
                    r["include_content"], r["created_at"])


def _delivery(r: asyncpg.Record) -> Delivery:
    keys = r.keys()
    return Delivery(r["id"], r["endpoint_id"], r["type"], r["body"], r["created_at"], r["attempts"], r["status"],
                    r["next_at"], r["last_status"], r["last_error"], r["url"] if "url" in keys else "",
                    r["secret"] if "secret" in keys else "", bool(r["include_content"]) if "include_content" in keys else False)


class PostgresWebhooksMixin:
    _fetch: Callable[..., Awaitable[list[Any]]]
    _execute: Callable[..., Awaitable[int]]

    async def save_webhook_endpoint(self, endpoint: Endpoint) -> None:
        await self._execute(
            "INSERT INTO webhook_endpoints (id, url, secret, events, include_content, created_at)"
            " VALUES ($1,$2,$3,$4,$5,$6) ON CONFLICT (id) DO UPDATE SET url = excluded.url, secret = excluded.secret,"
            " events = excluded.events, include_content = excluded.include_content",
            endpoint.id, endpoint.url, endpoint.secret, f",{','.join(endpoint.events)},", endpoint.include_content,
            endpoint.created_at)

    async def list_webhook_endpoints(self) -> list[Endpoint]:
        return [_endpoint(r) for r in await self._fetch("SELECT * FROM webhook_endpoints ORDER BY created_at, id")]

    async def remove_webhook_endpoint(self, endpoint_id: str) -> bool:
        return await self._execute("DELETE FROM webhook_endpoints WHERE id = $1", endpoint_id) > 0

    async def claim_webhook_deliveries(self, now: float, lease_s: float, limit: int,
                                       skip_endpoints: Collection[str] = ()) -> list[Delivery]:
        rows = await self._fetch(
            "UPDATE webhook_deliveries d SET lease_until = $2 FROM webhook_endpoints e"
            " WHERE e.id = d.endpoint_id AND d.id IN (SELECT id FROM webhook_deliveries WHERE status = 'pending'"
            " AND next_at <= $1 AND lease_until <= $1 AND NOT (endpoint_id = ANY($4::text[]))"
            " ORDER BY next_at LIMIT $3 FOR UPDATE SKIP LOCKED)"
            " RETURNING d.*, e.url, e.secret, e.include_content", now, now + lease_s, limit, list(skip_endpoints))
        return [_delivery(r) for r in rows]

    async def record_webhook_try(self, delivery_id: str, delivered: bool, next_at: float | None,
                                 last_status: int | None, last_error: str | None) -> None:
        status = "delivered" if delivered else ("pending" if next_at is not None else "failed")
        await self._execute(
            "UPDATE webhook_deliveries SET attempts = attempts + 1, status = $1, next_at = COALESCE($2, next_at),"
            " lease_until = 0, last_status = $3, last_error = $4 WHERE id = $5",
            status, next_at, last_status, last_error, delivery_id)

    async def count_pending_webhook_deliveries(self) -> int:
        rows = await self._fetch("SELECT count(*) AS n FROM webhook_deliveries WHERE status = 'pending'")
        return int(rows[0]["n"])

    async def prune_webhook_deliveries(self, created_before: float, limit: int) -> int:
        return await self._execute(
            "DELETE FROM webhook_deliveries WHERE id IN (SELECT id FROM webhook_deliveries"
            " WHERE status <> 'pending' AND created_at < $1 LIMIT $2)", created_before, limit)

    async def list_webhook_deliveries(self, endpoint_id: str, limit: int) -> list[Delivery]:
        rows = await self._fetch("SELECT * FROM webhook_deliveries WHERE endpoint_id = $1"
                                 " ORDER BY created_at DESC, id LIMIT $2", endpoint_id, limit)
        return [_delivery(r) for r in rows]
