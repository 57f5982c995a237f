"""Managing endpoints: the operator's CLI and the one the configuration names (never the HTTP API)."""

from __future__ import annotations

import time
import uuid

from ..config import Settings
from ..store.base import Store
from .model import ENV_ENDPOINT_ID, EVENT_TYPES, Endpoint, checked_events, checked_url, new_secret


async def sync_configured_endpoint(store: Store, settings: Settings) -> None:
    """GIMA_WEBHOOK_URL/SECRET as the endpoint `env` (every event type); gone from the store when unset."""
    if settings.webhook_url:
        await store.save_webhook_endpoint(Endpoint(ENV_ENDPOINT_ID, settings.webhook_url, settings.webhook_secret,
                                                   EVENT_TYPES, False, time.time()))
    else:
        await store.remove_webhook_endpoint(ENV_ENDPOINT_ID)


async def add_endpoint(store: Store, url: str, events: str | None, include_content: bool) -> Endpoint:
    """A new endpoint with a new secret (shown once, by the CLI)."""
    endpoint = Endpoint("we_" + uuid.uuid4().hex[:16], checked_url(url), new_secret(), checked_events(events),
                        include_content, time.time())
    await store.save_webhook_endpoint(endpoint)
    return endpoint
