"""The delivery loop, one per process: claims due deliveries from the store (a lease, so that two processes never
send the same one at once and a process that dies lets go), signs each with standardwebhooks, POSTs it with a
timeout, and records the try: delivered, retried later by the schedule with jitter, or given up."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import time
from collections import Counter
from datetime import UTC, datetime
from typing import Any, Sequence

import aiohttp
from standardwebhooks.webhooks import Webhook

from ..background import stop_tasks
from ..observability.metrics import Metrics
from ..store.base import Store
from .model import Delivery, next_delay

log = logging.getLogger("gima.webhooks")
BATCH = 20
MAX_IN_FLIGHT = 64  # tries at once per process
# Tries at once per endpoint and process: one receiver that hangs holds at most half the slots, never the others'.
# An endpoint is left out of a claim once it has more than this minus BATCH, so one claim cannot take it past.
MAX_IN_FLIGHT_PER_ENDPOINT = 32
PRUNE_EVERY_S = 3600.0  # at most; a short retention (tests, a small disk) prunes more often, never twice a second
PRUNE_BATCH = 1000  # rows per statement: a long delete would hold the store's one writer
PRUNE_ROUND = 10  # statements per round at most: a round holds this process's deliveries; a full round comes back
BACKLOG_EVERY_S = 15.0
MAX_ERROR_CHARS = 200


class WebhookSender:
    def __init__(self, store: Store, schedule: Sequence[float], timeout_s: float, poll_s: float,
                 metrics: Metrics | None = None, retention_s: float = 30 * 86400) -> None:
        self._store = store
        self._schedule = tuple(schedule)
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._lease_s = timeout_s * 2 + 5  # longer than any try: a held delivery is never sent twice at once
        self._poll_s = poll_s
        self._metrics = metrics
        self._session: aiohttp.ClientSession | None = None
        self._retention_s = retention_s
        self._prune_every_s = max(1.0, min(PRUNE_EVERY_S, retention_s / 24))

    async def run_forever(self) -> None:
        """Claim what is due whenever there is room, without waiting for tries in flight: a receiver that hangs
        holds its own tries (up to the timeout), never the others'."""
        self._session = aiohttp.ClientSession(timeout=self._timeout, headers={"User-Agent": "gima-server webhooks"})
        in_flight: set[asyncio.Task[None]] = set()
        per_endpoint: Counter[str] = Counter()
        room = asyncio.Event()  # set when a settled try makes an endpoint, or the process, claimable again
        counted_at, pruned_at = -BACKLOG_EVERY_S, -self._prune_every_s
        try:
            while True:
                if self._metrics is not None and time.monotonic() - counted_at >= BACKLOG_EVERY_S:
                    counted_at = time.monotonic()
                    await self._count_backlog()
                if time.monotonic() - pruned_at >= self._prune_every_s:
                    pruned_at = time.monotonic()
                    if await self.prune() >= PRUNE_BATCH * PRUNE_ROUND:
                        pruned_at = -self._prune_every_s  # more is old: another round after this turn's tries
                room.clear()  # before the claim: a try settling while it runs is not missed
                free = MAX_IN_FLIGHT - len(in_flight)
                full = [e for e, n in per_endpoint.items() if n > MAX_IN_FLIGHT_PER_ENDPOINT - BATCH]
                claimed = 0
                if free > 0:
                    try:
                        due = await self._store.claim_webhook_deliveries(
                            time.time(), self._lease_s, min(BATCH, free), skip_endpoints=full)
                    except Exception as exc:  # the store is away: try again at the next poll
                        log.warning("webhook deliveries could not be claimed (%s)", type(exc).__name__)
                        due = []
                    for delivery in due:
                        task = asyncio.create_task(self._try(delivery))
                        in_flight.add(task)
                        per_endpoint[delivery.endpoint_id] += 1
                        task.add_done_callback(
                            functools.partial(_settled, in_flight, per_endpoint, delivery.endpoint_id, room))
                    claimed = len(due)
                if claimed == BATCH:
                    continue  # more may be due
                if full or free < BATCH:
                    # Held back by tries in flight, not by an empty outbox: go on as soon as they make room (a poll
                    # per batch capped one endpoint at BATCH deliveries a poll: 20 a second by default).
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(self._poll_s):
                            await room.wait()
                else:
                    await asyncio.sleep(self._poll_s)
        finally:
            await stop_tasks(list(in_flight))  # shutting down: their leases run out and a later try takes them
            await self._session.close()

    async def prune(self) -> int:
        """Forget deliveries delivered or given up more than the retention ago (the outbox would grow with every
        reply forever), at most PRUNE_ROUND statements of PRUNE_BATCH rows; a pending one stays however old. Each
        process may run it: the deletes do not conflict."""
        created_before, deleted = time.time() - self._retention_s, 0
        try:
            for _ in range(PRUNE_ROUND):
                batch = await self._store.prune_webhook_deliveries(created_before, PRUNE_BATCH)
                deleted += batch
                if batch < PRUNE_BATCH:
                    break
                await asyncio.sleep(0)  # replies' writes queued meanwhile go between two batches
        except Exception as exc:  # the store is away: the next round
            log.warning("old webhook deliveries could not be pruned (%s)", type(exc).__name__)
        if deleted:
            log.info("pruned %d webhook deliveries older than %.0f days", deleted, self._retention_s / 86400)
        return deleted

    async def _count_backlog(self) -> None:
        assert self._metrics is not None
        try:
            self._metrics.webhook_backlog.set(await self._store.count_pending_webhook_deliveries())
        except Exception as exc:  # the store is away: the gauge keeps its last value
            log.warning("the webhook backlog could not be counted (%s)", type(exc).__name__)

    async def _try(self, delivery: Delivery) -> None:
        status: int | None = None
        error: str | None = None
        try:
            body = await self._body(delivery)
            status = await self._post(delivery, body)
            if not 200 <= status < 300:
                error = f"HTTP {status}"
        except TimeoutError:
            error = "timeout"
        except aiohttp.ClientError as exc:
            error = f"{type(exc).__name__}: {exc}"[:MAX_ERROR_CHARS]
        except Exception as exc:  # the store could not give the reply's text: a try that failed, retried later
            log.warning("webhook delivery %s could not be prepared (%s)", delivery.id, type(exc).__name__)
            error = f"not sent: {type(exc).__name__}"
        delivered = error is None
        next_at = None
        if not delivered:
            delay = next_delay(self._schedule, delivery.attempts + 1)
            next_at = time.time() + delay if delay is not None else None
            log.info("webhook delivery failed", extra={"delivery": delivery.id, "endpoint": delivery.endpoint_id,
                                                       "error": error, "willRetry": next_at is not None})
        if self._metrics is not None:
            result = "delivered" if delivered else ("retrying" if next_at is not None else "given_up")
            self._metrics.webhook_tries.labels(delivery.type, result).inc()
        try:
            await self._store.record_webhook_try(delivery.id, delivered, next_at, status, error)
        except Exception as exc:  # unrecorded: the lease runs out and the delivery is tried again (same webhook-id)
            log.warning("webhook delivery %s: its try could not be recorded (%s)", delivery.id, type(exc).__name__)

    async def _body(self, delivery: Delivery) -> str:
        """The queued body; with the reply's text for an endpoint that opted in (read now: it is final)."""
        if not delivery.include_content or not delivery.type.startswith("reply."):
            return delivery.body
        event: dict[str, Any] = json.loads(delivery.body)
        data = event["data"]
        message = await self._store.get_message(data["userId"], data["messageId"])
        data["content"] = message.content if message is not None else None
        return json.dumps(event, separators=(",", ":"))

    async def _post(self, delivery: Delivery, body: str) -> int:
        assert self._session is not None
        now = datetime.now(tz=UTC)
        headers = {"webhook-id": delivery.id, "webhook-timestamp": str(int(now.timestamp())),
                   "webhook-signature": Webhook(delivery.secret).sign(delivery.id, now, body),
                   "Content-Type": "application/json"}
        async with self._session.post(delivery.url, data=body.encode(), headers=headers, allow_redirects=False) as resp:
            await resp.read()
            return resp.status


def _settled(in_flight: set[asyncio.Task[None]], per_endpoint: Counter[str], endpoint_id: str, room: asyncio.Event,
             task: asyncio.Task[None]) -> None:
    in_flight.discard(task)
    per_endpoint[endpoint_id] -= 1
    if per_endpoint[endpoint_id] == MAX_IN_FLIGHT_PER_ENDPOINT - BATCH or len(in_flight) == MAX_IN_FLIGHT - BATCH:
        room.set()  # the endpoint is claimable again, or the process has room for a whole batch
    if per_endpoint[endpoint_id] <= 0:
        del per_endpoint[endpoint_id]
