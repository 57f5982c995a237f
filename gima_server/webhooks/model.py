"""Webhook endpoints, deliveries and event bodies (pure)."""

from __future__ import annotations

import base64
import json
import random
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Collection, Protocol, Sequence

EVENT_TYPES = ("reply.completed", "reply.failed", "reply.cancelled", "user.created", "user.deleted")
DEFAULT_RETRY_SCHEDULE = (5.0, 300.0, 1800.0, 7200.0, 18000.0)  # seconds after each failed try (Standard Webhooks)
MAX_URL_CHARS = 2048
ENV_ENDPOINT_ID = "env"  # the endpoint GIMA_WEBHOOK_URL configures


class WebhookError(ValueError):
    """A bad endpoint (URL, events) from the CLI or the configuration."""


def new_secret() -> str:
    """A Standard Webhooks secret: `whsec_` and 24 random bytes in base64."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


def checked_url(url: str) -> str:
    if not url.startswith(("http://", "https://")) or len(url) > MAX_URL_CHARS or any(c.isspace() for c in url):
        raise WebhookError(f"the URL must start with http:// or https://, have no spaces and at most {MAX_URL_CHARS} "
                           "characters")
    return url


def checked_events(raw: str | Sequence[str] | None) -> tuple[str, ...]:
    """The event types an endpoint subscribes to (all of them when none are named)."""
    names = [n.strip() for n in (raw.split(",") if isinstance(raw, str) else raw or ()) if n.strip()]
    unknown = sorted(set(names) - set(EVENT_TYPES))
    if unknown:
        raise WebhookError(f"unknown event type {', '.join(unknown)} (expected {', '.join(EVENT_TYPES)})")
    return tuple(n for n in EVENT_TYPES if n in names) if names else EVENT_TYPES


def checked_secret(secret: str) -> str:
    try:
        raw = base64.b64decode(secret.removeprefix("whsec_") + "==", validate=False)
    except ValueError:
        raw = b""
    if len(raw) < 16:
        raise WebhookError("the secret must be whsec_ followed by base64 of at least 16 bytes")
    return secret


def retry_schedule(raw: str) -> tuple[float, ...]:
    """GIMA_WEBHOOK_RETRY_SCHEDULE: seconds before each retry, comma-separated (at least 4 retries: 5 tries)."""
    try:
        delays = tuple(float(part) for part in raw.split(",") if part.strip())
    except ValueError:
        delays = ()
    if len(delays) < 4 or any(not 0 < d <= 7 * 86_400 for d in delays):
        raise WebhookError("must be at least 4 delays in seconds, each > 0 and at most a week (e.g. 5,300,1800,7200)")
    return delays


def next_delay(schedule: Sequence[float], failed_tries: int, rng: random.Random | None = None) -> float | None:
    """Seconds until the next try after `failed_tries` failures, with ±20 % jitter; None when the schedule is spent."""
    if failed_tries > len(schedule):
        return None
    return schedule[failed_tries - 1] * (rng or random).uniform(0.8, 1.2)


def event_body(event_type: str, data: dict[str, Any], at: float) -> str:
    """The Standard Webhooks payload, as sent: `{type, timestamp, data}`."""
    stamp = datetime.fromtimestamp(at, tz=UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return json.dumps({"type": event_type, "timestamp": stamp, "data": data}, separators=(",", ":"))


def reply_event_type(status: str) -> str:
    return {"complete": "reply.completed", "cancelled": "reply.cancelled"}.get(status, "reply.failed")


def reply_event(message_id: str, chat_id: str, user_id: str, model: str | None, status: str, finish_reason: str | None,
                usage: dict[str, Any] | None, at: float) -> tuple[str, str]:
    """(type, body) of the reply.* event a reply's final write queues; the text is added when sent, for endpoints
    that opted in."""
    event_type = reply_event_type(status)
    data: dict[str, Any] = {"messageId": message_id, "chatId": chat_id, "userId": user_id, "model": model,
                            "status": status, "finishReason": finish_reason}
    if usage is not None:
        data["usage"] = usage
    return event_type, event_body(event_type, data, at)


@dataclass(frozen=True, slots=True)
class Endpoint:
    id: str
    url: str
    secret: str = field(repr=False)
    events: tuple[str, ...] = EVENT_TYPES
    include_content: bool = False
    created_at: float = 0.0

    def public(self) -> dict[str, Any]:
        return {"id": self.id, "url": self.url, "events": list(self.events), "includeContent": self.include_content,
                "createdAt": self.created_at}


@dataclass(frozen=True, slots=True)
class Delivery:
    id: str  # the webhook-id: the same on every try
    endpoint_id: str
    type: str
    body: str
    created_at: float
    attempts: int = 0
    status: str = "pending"  # pending | delivered | failed
    next_at: float = 0.0
    last_status: int | None = None  # the receiver's HTTP status of the last try (None: no answer)
    last_error: str | None = None
    # Joined from the endpoint when claimed for sending:
    url: str = ""
    secret: str = field(default="", repr=False)
    include_content: bool = False

    def public(self) -> dict[str, Any]:
        return {"id": self.id, "type": self.type, "status": self.status, "attempts": self.attempts,
                "createdAt": self.created_at, "nextAt": self.next_at if self.status == "pending" else None,
                "lastStatus": self.last_status, "lastError": self.last_error}


class WebhookStore(Protocol):
    """The outbox: endpoints, and deliveries the store fans out in the transaction of the fact they report
    (finish_reply, create_user, delete_user)."""

    async def save_webhook_endpoint(self, endpoint: Endpoint) -> None:
        """Add the endpoint, or replace the one with its id."""
        ...

    async def list_webhook_endpoints(self) -> list[Endpoint]: ...

    async def remove_webhook_endpoint(self, endpoint_id: str) -> bool:
        """Remove the endpoint and its deliveries; False when there was none."""
        ...

    async def claim_webhook_deliveries(self, now: float, lease_s: float, limit: int,
                                       skip_endpoints: Collection[str] = ()) -> list[Delivery]:
        """Up to `limit` pending deliveries due by now that no process holds, each now held until now + lease_s;
        none for the endpoints in skip_endpoints (those this process already has enough tries in flight for)."""
        ...

    async def record_webhook_try(self, delivery_id: str, delivered: bool, next_at: float | None,
                                 last_status: int | None, last_error: str | None) -> None:
        """One try's outcome: delivered; or failed, tried again at next_at (None: given up)."""
        ...

    async def list_webhook_deliveries(self, endpoint_id: str, limit: int) -> list[Delivery]:
        """The endpoint's deliveries, newest first."""
        ...

    async def count_pending_webhook_deliveries(self) -> int:
        """Deliveries not yet delivered nor given up (the backlog an alert watches)."""
        ...

    async def prune_webhook_deliveries(self, created_before: float, limit: int) -> int:
        """Delete up to `limit` deliveries made before `created_before` that were delivered or given up (a pending
        one is never deleted); how many were."""
        ...
