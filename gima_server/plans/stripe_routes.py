"""POST /api/webhooks/stripe: subscriptions set users' plans. Verified by the `stripe` package's own signature check
(5 minutes' tolerance); each event id is handled once; a later change wins over an earlier one that arrives late."""

from __future__ import annotations

import logging
from typing import Any

from aiohttp import web

from .. import appkeys
from ..errors import ApiError, not_found
from .catalog import PlanCatalog

log = logging.getLogger("gima.stripe")
TOLERANCE_S = 300
MAX_EVENT_BYTES = 512 * 1024
SUBSCRIPTION_EVENTS = ("customer.subscription.created", "customer.subscription.updated",
                       "customer.subscription.deleted")
_PAYING = ("active", "trialing", "past_due")  # past_due: Stripe is still retrying the payment


def subscription_plan(event_type: str, subscription: dict[str, Any], catalog: PlanCatalog) -> str | None:
    """The plan a subscription gives now: its price's plan while it is paid for; None (the default) once it ends."""
    if event_type == "customer.subscription.deleted" or subscription.get("status") not in _PAYING:
        return None
    for item in (subscription.get("items") or {}).get("data") or ():
        price = (item.get("price") or {}).get("id")
        if isinstance(price, str) and price in catalog.prices:
            return catalog.prices[price]
    return None


def change_time(event: dict[str, Any], subscription: dict[str, Any]) -> float:
    """When the change happened at Stripe: the event's creation, or the subscription's end when that is later."""
    times = [event.get("created"), subscription.get("ended_at"), subscription.get("canceled_at")]
    return float(max(t for t in times if isinstance(t, (int, float))))


async def stripe_webhook(request: web.Request) -> web.Response:
    app = request.app
    secret, catalog = app[appkeys.SETTINGS].stripe_webhook_secret, app[appkeys.PLANS]
    if not secret or catalog is None:
        raise not_found()
    import stripe  # the stripe extra (check-config says so when the secret is set without it)

    payload = await request.content.read(MAX_EVENT_BYTES + 1)
    if len(payload) > MAX_EVENT_BYTES:
        raise ApiError(413, "payload_too_large", f"a Stripe event is at most {MAX_EVENT_BYTES} bytes here")
    try:
        event = stripe.Webhook.construct_event(payload, request.headers.get("Stripe-Signature"), secret,
                                               tolerance=TOLERANCE_S)
    except (ValueError, stripe.SignatureVerificationError):
        raise ApiError(400, "invalid_request", "the Stripe-Signature does not verify (a wrong secret, or a "
                                               "timestamp more than 5 minutes away)") from None
    body = event.to_dict()  # plain dicts from here: a stripe object refuses dict methods
    event_id, event_type = str(body.get("id")), str(body.get("type"))
    if event_type not in SUBSCRIPTION_EVENTS:
        return web.json_response({"received": True, "handled": False})
    subscription = (body.get("data") or {}).get("object")
    if not isinstance(subscription, dict) or not isinstance(body.get("created"), (int, float)):
        raise ApiError(400, "invalid_request", "a subscription event needs data.object and created")
    user_id = (subscription.get("metadata") or {}).get("gima_user_id")
    plan = subscription_plan(event_type, subscription, catalog)
    changed = await app[appkeys.STORE].set_plan_from_event(event_id, user_id if isinstance(user_id, str) else None,
                                                           plan, change_time(body, subscription))
    if changed is None:
        return web.json_response({"received": True, "handled": False, "duplicate": True})
    if not changed:  # no such user, or a later change already holds
        log.info("stripe event changed no plan", extra={"event": event_id, "type": event_type})
        return web.json_response({"received": True, "handled": False})
    log.info("plan set from stripe", extra={"event": event_id, "type": event_type, "plan": plan})
    return web.json_response({"received": True, "handled": True, "plan": plan})


def add_routes(app: web.Application) -> None:
    app.router.add_post("/api/webhooks/stripe", stripe_webhook)
