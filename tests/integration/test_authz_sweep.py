"""Every route of the router, tried without credentials, with another user's ids and as a non-admin.

The table below must name each route the app serves: a route added without a line here fails the sweep, so
no endpoint can be forgotten. Each protected route answers 401 without credentials; a route taking an id
answers 404 for another user's id (never 403, which would confirm it exists) and leaves that user's data as
it was; an admin route answers 403 to a signed-in non-admin.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aiohttp.test_utils import TestClient

from gima_server import appkeys

from ..conftest import Api, MakeClient, quick_user

PUBLIC = "public"  # answers anyone, by design
USER = "user"  # any signed-in user, no ids
OWNED = "owned"  # takes an id that must belong to the caller
ADMIN = "admin"


@dataclass(frozen=True)
class Probe:
    kind: str
    path: str = ""  # with {chat}, {message}, {job} filled in from the victim's data
    body: Any = None


ROUTES: dict[tuple[str, str], Probe] = {
    ("GET", "/"): Probe(PUBLIC),
    ("GET", "/health"): Probe(PUBLIC),
    ("GET", "/ready"): Probe(PUBLIC),
    ("GET", "/metrics"): Probe(PUBLIC),  # operational counters only, no user data (docs/security.md)
    ("GET", "/api/openapi.json"): Probe(PUBLIC),  # describes the routes, holds no data
    ("GET", "/static"): Probe(PUBLIC),
    ("POST", "/api/auth/signup"): Probe(PUBLIC),
    ("POST", "/api/auth/login"): Probe(PUBLIC),
    ("POST", "/api/auth/guest"): Probe(PUBLIC),  # 404 unless GIMA_GUEST_ACCESS=on
    ("GET", "/api/auth/oidc/login"): Probe(PUBLIC),  # sign-in itself (404 unless GIMA_OIDC_* are set)
    ("GET", "/api/auth/oidc/callback"): Probe(PUBLIC),
    ("POST", "/api/auth/logout"): Probe(USER, "/api/auth/logout"),
    ("GET", "/api/auth/me"): Probe(PUBLIC),  # signed out: 200 {user: null}; a bad token is still 401
    ("DELETE", "/api/auth/me"): Probe(USER, "/api/auth/me", {"password": "x"}),
    ("GET", "/api/metrics/summary"): Probe(ADMIN, "/api/metrics/summary"),
    ("POST", "/api/chats"): Probe(USER, "/api/chats", {"title": "x"}),
    ("GET", "/api/chats"): Probe(USER, "/api/chats"),
    ("GET", "/api/chats/{chatId}/messages"): Probe(OWNED, "/api/chats/{chat}/messages"),
    ("DELETE", "/api/chats/{chatId}"): Probe(OWNED, "/api/chats/{chat}"),
    ("PATCH", "/api/chats/{chatId}"): Probe(OWNED, "/api/chats/{chat}", {"title": "taken over"}),
    ("POST", "/api/chat/stream"): Probe(OWNED, "/api/chat/stream", {"content": "let me in", "chatId": "{chat}"}),
    ("GET", "/api/chat/streams/{messageId}/events"): Probe(OWNED, "/api/chat/streams/{message}/events"),
    ("POST", "/api/chat/streams/{messageId}/cancel"): Probe(OWNED, "/api/chat/streams/{message}/cancel"),
    ("GET", "/ws"): Probe(USER, "/ws"),
    ("POST", "/api/keys"): Probe(USER, "/api/keys", {"name": "x"}),
    ("GET", "/api/keys"): Probe(USER, "/api/keys"),
    ("GET", "/api/search"): Probe(USER, "/api/search?q=secret"),  # only the caller's messages: test_search.py
    ("DELETE", "/api/keys/{keyId}"): Probe(OWNED, "/api/keys/{key}"),
    ("GET", "/v1/models"): Probe(USER, "/v1/models"),
    ("GET", "/api/models"): Probe(USER, "/api/models"),
    # Embeddings and voice carry no ids; without an upstream configured they are 404 to a signed-in user too.
    ("POST", "/v1/embeddings"): Probe(USER, "/v1/embeddings", {"model": "m", "input": "let me in"}),
    ("POST", "/v1/audio/speech"): Probe(USER, "/v1/audio/speech", {"model": "m", "input": "x", "voice": "v"}),
    ("POST", "/v1/audio/transcriptions"): Probe(USER, "/v1/audio/transcriptions", {"model": "m"}),
    # The AI SDK's chat ids are the client's names, scoped to the caller (another user's name is a chat of
    # one's own, unknown: 204): test_ai_sdk_dialect proves that two users' same name never meet.
    ("POST", "/api/chat"): Probe(USER, "/api/chat", {
        "id": "x", "messages": [{"id": "m", "role": "user", "parts": [{"type": "text", "text": "let me in"}]}]}),
    ("GET", "/api/chat/{chatId}/stream"): Probe(USER, "/api/chat/x/stream"),
    ("POST", "/api/chat/{chatId}/stop"): Probe(USER, "/api/chat/x/stop"),
    ("POST", "/v1/chat/completions"): Probe(USER, "/v1/chat/completions", {
        "model": "gima-demo", "messages": [{"role": "user", "content": "let me in"}]}),
    ("POST", "/api/webhooks/stripe"): Probe(PUBLIC),  # its own auth: Stripe's signature (test_stripe.py)
    ("POST", "/api/hooks/replies/{replyId}/events"): Probe(PUBLIC),  # the agent's signature (test_webhook_agent.py)
    ("POST", "/api/migration/jobs"): Probe(USER, "/api/migration/jobs", {"source": "indexeddb"}),
    ("PUT", "/api/migration/jobs/{jobId}/batches/{seq}"): Probe(
        OWNED, "/api/migration/jobs/{job}/batches/0", {"conversations": []}),
    ("POST", "/api/migration/jobs/{jobId}/complete"): Probe(OWNED, "/api/migration/jobs/{job}/complete"),
    ("GET", "/api/migration/jobs/{jobId}"): Probe(OWNED, "/api/migration/jobs/{job}"),
}


def _served(client: TestClient) -> set[tuple[str, str]]:
    routes = set()
    for route in client.app.router.routes():
        if route.method in ("HEAD", "OPTIONS"):
            continue  # aiohttp's own companions of GET, and CORS preflights
        routes.add((route.method, route.resource.canonical if route.resource is not None else ""))
    return routes


def _fill(template: Any, ids: dict[str, str]) -> Any:
    if isinstance(template, str):
        return template.format(**ids) if "{" in template else template
    if isinstance(template, dict):
        return {k: _fill(v, ids) for k, v in template.items()}
    return template


async def _call(client: TestClient, method: str, path: str, body: Any, headers: dict[str, str]) -> tuple[int, str]:
    resp = await client.request(method, path, json=body, headers=headers)
    return resp.status, await resp.text()


async def test_every_route_is_in_the_sweep_table(make_client: MakeClient) -> None:
    client = await make_client(migration_enabled=True)
    assert _served(client) == set(ROUTES), "a route was added or removed: classify it in ROUTES"


async def test_no_credentials_is_401_everywhere_protected(make_client: MakeClient) -> None:
    client = await make_client(migration_enabled=True)
    ids = {"chat": "c" * 32, "message": "m" * 32, "job": "j" * 32, "key": "k" * 32}
    for (method, _), probe in ROUTES.items():
        if probe.kind == PUBLIC:
            continue
        status, text = await _call(client, method, _fill(probe.path, ids), _fill(probe.body, ids), {})
        assert status == 401, (method, probe.path, status, text)
        code = "invalid_api_key" if probe.path.startswith("/v1/") else "unauthorized"  # OpenAI's name for it on /v1
        assert f'"code":"{code}"' in text.replace(" ", "")


async def _victim_data(client: TestClient) -> tuple[Api, dict[str, str]]:
    bob = await quick_user(client, "bob@example.com")
    await client.app[appkeys.STORE].set_roles(bob.user["id"], ("user", "alpha"))
    events, _ = await bob.stream("bob's secret plans")
    chat_id = (await (await client.get("/api/chats", headers=bob.headers)).json())["chats"][0]["id"]
    job = await client.post("/api/migration/jobs", json={"source": "indexeddb"}, headers=bob.headers)
    assert job.status == 201, await job.text()
    key = await client.post("/api/keys", json={"name": "bob's script"}, headers=bob.headers)
    assert key.status == 201, await key.text()
    return bob, {"chat": chat_id, "message": events[0].data["messageId"], "job": (await job.json())["job"]["id"],
                 "key": (await key.json())["id"]}


async def _snapshot(client: TestClient, bob: Api, ids: dict[str, str]) -> Any:
    messages = await (await client.get(f"/api/chats/{ids['chat']}/messages", headers=bob.headers)).json()
    chats = await (await client.get("/api/chats", headers=bob.headers)).json()
    job = await client.app[appkeys.STORE].get_migration_job(bob.user["id"], ids["job"])  # polling it is rate-limited
    assert job is not None
    keys = await client.app[appkeys.STORE].list_api_keys(bob.user["id"])
    return messages, chats, job, keys


async def test_another_users_ids_are_404_and_change_nothing(make_client: MakeClient) -> None:
    client = await make_client(migration_enabled=True, demo_tokens_per_s=0, demo_first_token_ms=0)
    bob, ids = await _victim_data(client)
    before = await _snapshot(client, bob, ids)
    mallory = await quick_user(client, "mallory@example.com")
    await client.app[appkeys.STORE].set_roles(mallory.user["id"], ("user", "alpha"))
    for (method, _), probe in ROUTES.items():
        if probe.kind != OWNED:
            continue
        status, text = await _call(client, method, _fill(probe.path, ids), _fill(probe.body, ids), mallory.headers)
        assert status == 404, (method, probe.path, status, text)
        assert "secret plans" not in text
    reused = await client.post("/api/chat/stream", json={"content": "hijack", "messageId": ids["message"]},
                               headers=mallory.headers)
    assert reused.status == 409  # a message id that is someone else's is never joined or overwritten
    assert await _snapshot(client, bob, ids) == before


async def test_admin_routes_refuse_a_signed_in_user(make_client: MakeClient) -> None:
    client = await make_client()
    carol = await quick_user(client, "carol@example.com")
    for (method, _), probe in ROUTES.items():
        if probe.kind == ADMIN:
            status, text = await _call(client, method, probe.path, probe.body, carol.headers)
            assert status == 403, (method, probe.path, status, text)
