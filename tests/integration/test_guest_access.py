"""Guest access for the widget (GIMA_GUEST_ACCESS): its own account and lower quotas, limited per anonymous
caller (address and User-Agent; X-Forwarded-For only from GIMA_TRUSTED_PROXIES), data that expires."""

from __future__ import annotations

import time
from typing import Any

from aiohttp.test_utils import TestClient

from gima_server import appkeys

from ..conftest import Api, MakeClient, quick_user, same_origin
from ..sse import parse_sse

FAST = {"demo_tokens_per_s": 0, "demo_first_token_ms": 0}


async def _guest(client: TestClient, **headers: str) -> Any:
    return await client.post("/api/auth/guest", headers={**same_origin(client), **headers})


async def _as_guest(client: TestClient, **headers: str) -> Api:
    resp = await _guest(client, **headers)
    assert resp.status == 201, await resp.text()
    body = await resp.json()
    return Api(client, body["accessToken"], body["user"])


async def test_off_by_default_the_route_does_not_exist(make_client: MakeClient) -> None:
    client = await make_client()
    resp = await _guest(client)
    assert resp.status == 404 and (await resp.json())["error"]["code"] == "not_found"


async def test_a_guest_can_chat_and_resume(make_client: MakeClient) -> None:
    client = await make_client(guest_access=True, **FAST)
    resp = await _guest(client)
    assert resp.status == 201 and resp.headers["Cache-Control"] == "no-store" and "gima_session" in resp.cookies
    body = await resp.json()
    guest = Api(client, body["accessToken"], body["user"])
    assert body["user"]["roles"] == ["guest"]
    events, _ = await guest.stream("hello as a guest")
    assert events[-1].name == "done"
    status, replayed = await guest.resume(events[0].data["messageId"], 1)
    assert status == 200 and [e.id for e in replayed] == [e.id for e in events[1:]]


async def test_guests_never_reach_migration_or_admin_routes(make_client: MakeClient) -> None:
    client = await make_client(guest_access=True, migration_enabled=True)
    guest = await _as_guest(client)
    for method, path in [("POST", "/api/migration/jobs"), ("GET", "/api/migration/jobs/" + "a" * 32)]:
        resp = await client.request(method, path, json={"source": "indexeddb"}, headers=guest.headers)
        assert resp.status == 404, (method, path)
    assert (await client.get("/api/metrics/summary", headers=guest.headers)).status == 403


async def test_guest_sessions_are_limited_per_address_and_user_agent(make_client: MakeClient) -> None:
    client = await make_client(guest_access=True, rate_limits="guest=1/h/2")
    statuses = [(await _guest(client, **{"User-Agent": "widget/1"})).status for _ in range(3)]
    assert statuses == [201, 201, 429]
    assert (await _guest(client, **{"User-Agent": "another browser"})).status == 201  # a composite key
    spoofed = await _guest(client, **{"User-Agent": "widget/1", "X-Forwarded-For": "203.0.113.9"})
    assert spoofed.status == 429  # no trusted proxy: the header is not believed


async def test_behind_a_trusted_proxy_each_forwarded_client_has_its_own_bucket(make_client: MakeClient) -> None:
    client = await make_client(guest_access=True, rate_limits="guest=1/h/1", trusted_proxies=("127.0.0.1",))
    first = await _guest(client, **{"X-Forwarded-For": "198.51.100.7"})
    again = await _guest(client, **{"X-Forwarded-For": "198.51.100.7"})
    other = await _guest(client, **{"X-Forwarded-For": "203.0.113.9, 198.51.100.8"})  # the nearest hop counts
    assert (first.status, again.status, other.status) == (201, 429, 201)


async def test_a_guest_has_a_lower_chat_quota_than_a_user(make_client: MakeClient) -> None:
    client = await make_client(guest_access=True, rate_limits="guest_chat=1/min/1,chat=30/min/10", **FAST)
    guest = await _as_guest(client)
    assert (await guest.stream("one"))[0][-1].name == "done"
    refused = await client.post("/api/chat/stream", json={"content": "two"}, headers=guest.headers)
    assert refused.status == 429 and "(guest_chat)" in (await refused.json())["error"]["message"]
    user = await quick_user(client, "user@example.com")
    for n in range(2):
        assert (await user.stream(f"user {n}"))[0][-1].name == "done"


async def test_expired_guests_lose_their_data_and_sign_in(make_client: MakeClient) -> None:
    client = await make_client(guest_access=True, session_cache_s=0, **FAST)
    guest = await _as_guest(client)
    events, _ = await guest.stream("remember me?")
    user = await quick_user(client, "stays@example.com")
    await user.stream("I stay")
    store = client.app[appkeys.STORE]
    assert await store.delete_guests(time.time() + 1) == 1
    assert (await client.get("/api/auth/me", headers=guest.headers)).status == 401
    assert await store.message_owner(events[0].data["messageId"]) is None
    chats = await client.get("/api/chats", headers=user.headers)
    assert chats.status == 200 and len((await chats.json())["chats"]) == 1
    assert await store.delete_guests(time.time() + 1) == 0
    resp = await client.post("/api/chat/stream", json={"content": "x"}, headers=guest.headers)
    assert resp.status == 401 and parse_sse(await resp.read())[0] == []
