"""POST /api/hooks/replies/{replyId}/events: a webhook agent's backend delivering a reply's events, signed with the
agent's secret (Standard Webhooks). Wrong or stale signature: 401 and nothing changes; a reply that has ended: 409;
a batch already taken (the same webhook-id): 200 and nothing changes."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from .. import appkeys
from ..errors import ApiError, invalid, not_found
from ..ids import path_id
from ..validation import parse_json

MAX_BATCH_BYTES = 1024 * 1024
MAX_EVENTS = 1000
_TYPES = {"delta": {"text"}, "agent": {"agent", "phase"}, "done": set(), "error": set()}


def _checked(body: Any) -> list[dict[str, Any]]:
    events = body.get("events") if isinstance(body, dict) else None
    if not isinstance(events, list) or not 1 <= len(events) <= MAX_EVENTS:
        raise invalid(f"body must be {{events: [...]}} with 1 to {MAX_EVENTS} events")
    for n, event in enumerate(events):
        kind = event.get("type") if isinstance(event, dict) else None
        if kind not in _TYPES:
            raise invalid(f"events[{n}].type must be one of {', '.join(_TYPES)}")
        for field in _TYPES[kind]:
            if not isinstance(event.get(field), str):
                raise invalid(f"events[{n}].{field} must be a string")
        if kind == "agent" and event["phase"] not in ("start", "end"):
            raise invalid(f"events[{n}].phase must be start or end")
    return events


async def hook_events(request: web.Request) -> web.Response:
    app = request.app
    reply_id = path_id(request.match_info["replyId"], "replyId")
    inbox, models = app[appkeys.HOOKS], app[appkeys.MODELS]
    catalog = models.catalog
    agent_id = await inbox.agent_of(reply_id)
    ended = agent_id is None
    if ended:  # not awaiting events: an ended reply of a webhook agent (409 once signed), or nothing of ours
        store = app[appkeys.STORE]
        owner = await store.message_owner(reply_id)
        message = await store.get_message(owner, reply_id) if owner is not None else None
        agent_id = message.model if message is not None else None
    entry = catalog.entries.get(agent_id) if catalog is not None and agent_id is not None else None
    if entry is None or entry.kind != "webhook":
        raise not_found("reply")
    raw = await request.content.read(MAX_BATCH_BYTES + 1)
    if len(raw) > MAX_BATCH_BYTES:
        raise ApiError(413, "payload_too_large", f"a batch is at most {MAX_BATCH_BYTES} bytes")
    try:
        Webhook(entry.api_key).verify(raw, dict(request.headers), json_parse=False)
    except (WebhookVerificationError, ValueError):
        raise ApiError(401, "unauthorized", "the webhook signature does not verify (wrong secret, or a timestamp "
                                            "more than 5 minutes away)") from None
    if ended:
        raise ApiError(409, "conflict", "the reply has ended; its events can no longer change")
    events = _checked(parse_json(raw))
    if not await inbox.deliver(reply_id, request.headers["webhook-id"], events):
        return web.json_response({"accepted": 0, "duplicate": True})
    return web.json_response({"accepted": len(events)}, status=202)


def add_routes(app: web.Application) -> None:
    app.router.add_post("/api/hooks/replies/{replyId}/events", hook_events)
