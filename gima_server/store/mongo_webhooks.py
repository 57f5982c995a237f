"""Outgoing webhooks in the MongoDB store: endpoints and deliveries as documents. A fact's deliveries are written
right after it, not in its transaction (the store runs without multi-document transactions on the reply's path):
a process that dies between the two loses that event's deliveries (ADR 23). Not tested here: no MongoDB server can
run on the CI machine (the contract suite runs it where GIMA_TEST_MONGODB_URI is set)."""

from __future__ import annotations

import secrets
from typing import Any, Collection

from pymongo import ASCENDING, DESCENDING, ReturnDocument
from pymongo.asynchronous.database import AsyncDatabase

from ..webhooks.model import Delivery, Endpoint


def _endpoint(d: dict[str, Any]) -> Endpoint:
    return Endpoint(d["_id"], d["url"], d["secret"], tuple(d["events"]), bool(d["include_content"]), d["created_at"])


def _delivery(d: dict[str, Any], endpoint: Endpoint | None = None) -> Delivery:
    return Delivery(d["_id"], d["endpoint_id"], d["type"], d["body"], d["created_at"], d["attempts"], d["status"],
                    d["next_at"], d.get("last_status"), d.get("last_error"), endpoint.url if endpoint else "",
                    endpoint.secret if endpoint else "", endpoint.include_content if endpoint else False)


class MongoWebhooksMixin:
    _db: AsyncDatabase[dict[str, Any]]

    async def _webhook_indexes(self) -> None:
        await self._db.webhook_deliveries.create_index([("status", ASCENDING), ("next_at", ASCENDING)])
        await self._db.webhook_deliveries.create_index([("endpoint_id", ASCENDING), ("created_at", DESCENDING)])

    async def _fan_out(self, event_type: str, body: str, now: float) -> None:
        endpoints = [d["_id"] async for d in self._db.webhook_endpoints.find({"events": event_type}, {"_id": 1})]
        if endpoints:
            await self._db.webhook_deliveries.insert_many([
                {"_id": "msg_" + secrets.token_hex(12), "endpoint_id": e, "type": event_type, "body": body,
                 "created_at": now, "next_at": now, "attempts": 0, "status": "pending", "lease_until": 0.0}
                for e in endpoints])

    async def save_webhook_endpoint(self, endpoint: Endpoint) -> None:
        await self._db.webhook_endpoints.replace_one(
            {"_id": endpoint.id}, {"url": endpoint.url, "secret": endpoint.secret, "events": list(endpoint.events),
                                   "include_content": endpoint.include_content, "created_at": endpoint.created_at},
            upsert=True)

    async def list_webhook_endpoints(self) -> list[Endpoint]:
        cursor = self._db.webhook_endpoints.find().sort([("created_at", ASCENDING), ("_id", ASCENDING)])
        return [_endpoint(d) async for d in cursor]

    async def remove_webhook_endpoint(self, endpoint_id: str) -> bool:
        removed = (await self._db.webhook_endpoints.delete_one({"_id": endpoint_id})).deleted_count > 0
        await self._db.webhook_deliveries.delete_many({"endpoint_id": endpoint_id})
        return bool(removed)

    async def claim_webhook_deliveries(self, now: float, lease_s: float, limit: int,
                                       skip_endpoints: Collection[str] = ()) -> list[Delivery]:
        endpoints = {e.id: e for e in await self.list_webhook_endpoints()}
        claimed = []
        for _ in range(limit):  # one at a time: find_one_and_update is the atomic claim
            doc = await self._db.webhook_deliveries.find_one_and_update(
                {"status": "pending", "next_at": {"$lte": now}, "lease_until": {"$lte": now},
                 "endpoint_id": {"$nin": list(skip_endpoints)}},
                {"$set": {"lease_until": now + lease_s}}, sort=[("next_at", ASCENDING)],
                return_document=ReturnDocument.AFTER)
            if doc is None:
                break
            if doc["endpoint_id"] in endpoints:
                claimed.append(_delivery(doc, endpoints[doc["endpoint_id"]]))
        return claimed

    async def record_webhook_try(self, delivery_id: str, delivered: bool, next_at: float | None,
                                 last_status: int | None, last_error: str | None) -> None:
        update: dict[str, Any] = {"status": "delivered" if delivered else ("pending" if next_at is not None else "failed"),
                                  "lease_until": 0.0, "last_status": last_status, "last_error": last_error}
        if next_at is not None:
            update["next_at"] = next_at
        await self._db.webhook_deliveries.update_one({"_id": delivery_id}, {"$set": update, "$inc": {"attempts": 1}})

    async def count_pending_webhook_deliveries(self) -> int:
        return int(await self._db.webhook_deliveries.count_documents({"status": "pending"}))

    async def prune_webhook_deliveries(self, created_before: float, limit: int) -> int:
        done = {"status": {"$ne": "pending"}, "created_at": {"$lt": created_before}}
        ids = [d["_id"] async for d in self._db.webhook_deliveries.find(done, {"_id": 1}).limit(limit)]
        if not ids:
            return 0
        result = await self._db.webhook_deliveries.delete_many({"_id": {"$in": ids}, **done})
        return int(result.deleted_count)

    async def list_webhook_deliveries(self, endpoint_id: str, limit: int) -> list[Delivery]:
        cursor = self._db.webhook_deliveries.find({"endpoint_id": endpoint_id}).sort(
            [("created_at", DESCENDING), ("_id", ASCENDING)]).limit(limit)
        return [_delivery(d) async for d in cursor]
