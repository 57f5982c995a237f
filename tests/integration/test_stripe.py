"""POST /api/webhooks/stripe with events signed exactly as Stripe signs them (a timestamped HMAC-SHA256 of
"{t}.{payload}"), verified by the server through the `stripe` package: subscriptions set plans; replays, stale and
wrongly signed events change nothing; out-of-order events resolve by when the change happened."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient

from ..conftest import Api, MakeClient, quick_user
from .test_plans import PLANS, _me, _plans_file

SECRET = "whsec_test_" + "s" * 24


def _event(event_id: str, event_type: str, user_id: str, price: str, created: float, status: str = "active",
           **extra: Any) -> str:
    subscription = {"id": "sub_1", "object": "subscription", "status": status, "metadata": {"gima_user_id": user_id},
                    "items": {"object": "list", "data": [{"id": "si_1", "object": "subscription_item",
                                                          "price": {"id": price, "object": "price"}}]}, **extra}
    return json.dumps({"id": event_id, "object": "event", "type": event_type, "created": int(created),
                       "api_version": "2024-06-20", "livemode": False, "data": {"object": subscription}})


def _signature(payload: str, secret: str = SECRET, at: float | None = None) -> str:
    t = int(at if at is not None else time.time())
    digest = hmac.new(secret.encode(), f"{t}.{payload}".encode(), hashlib.sha256).hexdigest()
    return f"t={t},v1={digest}"


async def _send(client: TestClient, payload: str, signature: str | None = None) -> tuple[int, dict[str, Any]]:
    resp = await client.post("/api/webhooks/stripe", data=payload.encode(),
                             headers={"Stripe-Signature": signature or _signature(payload),
                                      "Content-Type": "application/json"})
    return resp.status, await resp.json()


async def _setup(tmp_path: Path, make_client: MakeClient) -> tuple[TestClient, Api]:
    client = await make_client(plans_file=_plans_file(tmp_path, PLANS), stripe_webhook_secret=SECRET,
                               session_cache_s=0)
    return client, await quick_user(client, "payer@example.com")


async def _plan(api: Api) -> str:
    return str((await _me(api))["plan"]["name"])


async def test_subscriptions_set_the_plan_and_a_deleted_one_returns_the_user_to_the_default(
    tmp_path: Path, make_client: MakeClient,
) -> None:
    client, payer = await _setup(tmp_path, make_client)
    uid, now = payer.user["id"], time.time()
    status, body = await _send(client, _event("evt_1", "customer.subscription.created", uid, "price_pro", now - 30))
    assert status == 200 and body == {"received": True, "handled": True, "plan": "pro"}
    assert await _plan(payer) == "pro"
    status, body = await _send(client, _event("evt_2", "customer.subscription.deleted", uid, "price_pro", now - 20,
                                              status="canceled", ended_at=int(now - 20)))
    assert status == 200 and body["plan"] is None
    assert await _plan(payer) == "free"


async def test_the_same_event_id_twice_is_a_no_op(tmp_path: Path, make_client: MakeClient) -> None:
    client, payer = await _setup(tmp_path, make_client)
    uid, now = payer.user["id"], time.time()
    first = _event("evt_same", "customer.subscription.created", uid, "price_pro", now - 60)
    assert (await _send(client, first))[1]["handled"]
    await _send(client, _event("evt_gone", "customer.subscription.deleted", uid, "price_pro", now - 50,
                               status="canceled"))
    assert await _plan(payer) == "free"
    # The same id again, even claiming a later change: already handled, so nothing changes.
    again = _event("evt_same", "customer.subscription.updated", uid, "price_pro", now - 10)
    status, body = await _send(client, again)
    assert status == 200 and body == {"received": True, "handled": False, "duplicate": True}
    assert await _plan(payer) == "free"


async def test_events_out_of_order_resolve_by_when_the_change_happened(tmp_path: Path, make_client: MakeClient) -> None:
    client, payer = await _setup(tmp_path, make_client)
    uid, now = payer.user["id"], time.time()
    later = _event("evt_later", "customer.subscription.updated", uid, "price_pro", now - 10)
    earlier = _event("evt_earlier", "customer.subscription.created", uid, "price_unknown", now - 100)
    assert (await _send(client, later))[1]["plan"] == "pro"
    status, body = await _send(client, earlier)  # delivered late: an older state of the subscription
    assert status == 200 and body["handled"] is False
    assert await _plan(payer) == "pro"


async def test_stale_wrongly_signed_and_unsigned_events_are_400_and_change_nothing(
    tmp_path: Path, make_client: MakeClient,
) -> None:
    client, payer = await _setup(tmp_path, make_client)
    uid = payer.user["id"]
    payload = _event("evt_x", "customer.subscription.created", uid, "price_pro", time.time())
    signed_other_body = _signature(payload.replace("price_pro", "price_free"))  # signed, then the body changed
    for signature in (_signature(payload, at=time.time() - 400),  # older than the 5 minutes' tolerance
                      _signature(payload, secret="whsec_someone_else_" + "x" * 20),
                      signed_other_body, "t=1,v1=deadbeef", "garbage"):
        status, body = await _send(client, payload, signature)
        assert status == 400 and body["error"]["code"] == "invalid_request", signature
    resp = await client.post("/api/webhooks/stripe", data=payload.encode())  # no Stripe-Signature at all
    assert resp.status == 400
    hollow = json.dumps({"id": "evt_h", "object": "event", "type": "customer.subscription.updated", "data": {}})
    assert (await _send(client, hollow))[0] == 400  # signed, but no subscription in it
    assert await _plan(payer) == "free"
    # The same event, signed right, still works: nothing was recorded by the refusals.
    assert (await _send(client, payload))[1]["plan"] == "pro"


async def test_unknown_events_and_unknown_users_are_200_and_ignored(tmp_path: Path, make_client: MakeClient) -> None:
    client, payer = await _setup(tmp_path, make_client)
    invoice = json.dumps({"id": "evt_inv", "object": "event", "type": "invoice.paid", "created": int(time.time()),
                          "data": {"object": {"id": "in_1", "object": "invoice"}}})
    assert await _send(client, invoice) == (200, {"received": True, "handled": False})
    stranger = _event("evt_who", "customer.subscription.created", "no-such-user", "price_pro", time.time())
    assert await _send(client, stranger) == (200, {"received": True, "handled": False})
    assert await _plan(payer) == "free"


async def test_without_a_stripe_secret_the_route_is_404(make_client: MakeClient) -> None:
    client = await make_client()
    payload = _event("evt_1", "customer.subscription.created", "u", "price_pro", time.time())
    status, body = await _send(client, payload)
    assert status == 404 and body["error"]["code"] == "not_found"
