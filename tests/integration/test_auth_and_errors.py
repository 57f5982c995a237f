"""Accounts, sessions, the same-origin check and the error format, through a real server."""

from __future__ import annotations

import asyncio

import jwt
import pytest
from aiohttp.test_utils import TestClient

from gima_server import appkeys

from ..conftest import Api, MakeClient, log_in, same_origin, sign_up

PROTECTED = [
    ("POST", "/api/auth/logout"),
    ("GET", "/api/chats"),
    ("POST", "/api/chats"),
    ("GET", "/api/chats/abc/messages"),
    ("DELETE", "/api/chats/abc"),
    ("POST", "/api/chat/stream"),
    ("GET", "/api/chat/streams/abc/events"),
    ("POST", "/api/chat/streams/abc/cancel"),
]


@pytest.mark.parametrize(("method", "path"), PROTECTED)
async def test_auth_is_required(client: TestClient, method: str, path: str) -> None:
    resp = await client.request(method, path, json={"content": "x"})
    assert resp.status == 401
    assert (await resp.json())["error"]["code"] == "unauthorized"


async def test_signed_out_me_is_an_answer_not_an_error(client: TestClient) -> None:
    """A page asks /api/auth/me on its first visit: nobody signed in is 200 {user: null} (a 401 would be logged
    as a console error by every browser); credentials that do not verify stay 401 (below)."""
    resp = await client.get("/api/auth/me")
    assert resp.status == 200 and await resp.json() == {"user": None}
    assert resp.headers["Cache-Control"] == "no-store"


async def test_bad_bearer_tokens_are_401(client: TestClient, alice: Api) -> None:
    tampered = alice.token[:-2] + ("AA" if not alice.token.endswith("AA") else "BB")
    for header in (f"Bearer {tampered}", "Bearer", "Basic abc", f"bearer {alice.token}x"):
        resp = await client.get("/api/auth/me", headers={"Authorization": header})
        assert resp.status == 401, header


async def test_signup_login_me_and_email_normalisation(client: TestClient) -> None:
    api = await sign_up(client, "  Carol@Example.COM ")
    assert api.user["email"] == "carol@example.com" and api.user["roles"] == ["user"]
    dup = await client.post(
        "/api/auth/signup", json={"email": "CAROL@example.com", "password": "another password"}, headers=same_origin(client)
    )
    assert dup.status == 409 and (await dup.json())["error"]["code"] == "conflict"
    again = await log_in(client, "carol@EXAMPLE.com")
    me = await client.get("/api/auth/me", headers=again.headers)
    assert (await me.json())["user"]["id"] == api.user["id"]
    wrong = await client.post(
        "/api/auth/login", json={"email": "carol@example.com", "password": "wrong password"}, headers=same_origin(client)
    )
    assert wrong.status == 401
    stranger = await client.post(
        "/api/auth/login", json={"email": "nobody@example.com", "password": "wrong password"}, headers=same_origin(client)
    )
    assert stranger.status == 401 and (await stranger.json()) ["error"]["message"] == (await wrong.json())["error"]["message"]


async def test_logout_revokes_the_session_and_its_tokens(client: TestClient) -> None:
    first = await sign_up(client, "dave@example.com")
    other = await log_in(client, "dave@example.com")
    assert (await client.post("/api/auth/logout", headers=first.headers)).status == 204
    assert (await client.get("/api/auth/me", headers=first.headers)).status == 401
    assert (await client.get("/api/auth/me", headers=other.headers)).status == 200  # other logins go on


async def test_cookie_session_works_and_writes_need_same_origin(make_client: MakeClient) -> None:
    client = await make_client()
    signup = await client.post(
        "/api/auth/signup", json={"email": "erin@example.com", "password": "cookie password"}, headers=same_origin(client)
    )
    assert signup.status == 201
    cookie = signup.cookies["gima_session"]
    assert cookie["httponly"] and cookie["samesite"] == "Lax"
    csrf = (await signup.json())["csrfToken"]
    assert (await client.get("/api/auth/me")).status == 200  # the cookie alone authenticates reads
    evil = await client.post("/api/chats", json={"title": "x"}, headers={"Origin": "https://evil.example"})
    assert evil.status == 403 and (await evil.json())["error"]["code"] == "forbidden"
    no_origin = await client.post("/api/chats", json={"title": "x"})
    assert no_origin.status == 403
    referer = await client.post("/api/chats", json={"title": "x"}, headers={"Referer": "https://evil.example/page"})
    assert referer.status == 403
    assert (await (await client.get("/api/chats")).json())["chats"] == []
    ok = await client.post("/api/chats", json={"title": "mine"}, headers=same_origin(client))
    assert ok.status == 201
    with_token = await client.post(
        "/api/chats", json={"title": "token"}, headers={"Origin": "https://evil.example", "X-CSRF-Token": csrf}
    )
    assert with_token.status == 201
    logout = await client.post("/api/auth/logout", headers=same_origin(client))
    assert logout.status == 204
    assert (await (await client.get("/api/auth/me")).json())["user"] is None


async def test_login_from_a_foreign_origin_is_refused(client: TestClient) -> None:
    await sign_up(client, "frank@example.com")
    client.session.cookie_jar.clear()
    resp = await client.post(
        "/api/auth/login",
        json={"email": "frank@example.com", "password": "correct horse battery"},
        headers={"Origin": "https://evil.example"},
    )
    assert resp.status == 403


async def test_cors_only_for_listed_origins(make_client: MakeClient) -> None:
    client = await make_client(allowed_origins=("https://widget.example",))
    pre = await client.options(
        "/api/chat/stream", headers={"Origin": "https://widget.example", "Access-Control-Request-Method": "POST"}
    )
    assert pre.status == 204 and pre.headers["Access-Control-Allow-Origin"] == "https://widget.example"
    assert pre.headers["Access-Control-Allow-Credentials"] == "true"
    other = await client.get("/health", headers={"Origin": "https://evil.example"})
    assert "Access-Control-Allow-Origin" not in other.headers


async def test_errors_are_json_with_trace_ids(client: TestClient) -> None:
    resp = await client.get("/no/such/path")
    assert resp.status == 404 and resp.content_type == "application/json"
    body = await resp.json()
    assert body["error"]["code"] == "not_found" and body["error"]["traceId"] == resp.headers["X-Trace-Id"]
    resp = await client.put("/api/chats")
    assert resp.status == 405 and (await resp.json())["error"]["code"] == "method_not_allowed"


async def test_trace_id_is_reused_from_the_request(client: TestClient) -> None:
    traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    resp = await client.get("/health", headers={"traceparent": traceparent})
    assert resp.headers["X-Trace-Id"] == "4bf92f3577b34da6a3ce929d0e0e4736"
    resp = await client.get("/health", headers={"X-Request-Id": "req-123"})
    assert resp.headers["X-Trace-Id"] == "req-123"
    resp = await client.get("/health", headers={"X-Request-Id": "bad id <script>"})
    assert resp.headers["X-Trace-Id"] != "bad id <script>" and len(resp.headers["X-Trace-Id"]) == 32


async def test_unexpected_errors_are_500_without_traceback(make_client: MakeClient, tmp_path, caplog) -> None:  # type: ignore[no-untyped-def]
    from gima_server.store.sqlite import SqliteStore

    class BrokenStore(SqliteStore):
        async def list_chats(self, *args, **kwargs):  # type: ignore[no-untyped-def]
            raise RuntimeError("disk on fire")

    client = await make_client(store=BrokenStore(tmp_path / "broken.sqlite3"))
    alice = await sign_up(client, "gina@example.com")
    resp = await client.get("/api/chats", headers=alice.headers)
    text = await resp.text()
    assert resp.status == 500 and "Traceback" not in text and "disk on fire" not in text
    body = await resp.json()
    assert body["error"]["code"] == "internal_error"
    logged = [r for r in caplog.records if r.exc_info and "disk on fire" in str(r.exc_info[1])]
    assert logged and getattr(logged[0], "trace_id", None) == resp.headers["X-Trace-Id"]


async def test_health(client: TestClient) -> None:
    resp = await client.get("/health")
    assert resp.status == 200 and await resp.json() == {"status": "ok"}


async def test_a_session_revoked_elsewhere_stops_working_within_the_cache_time(make_client: MakeClient) -> None:
    client = await make_client(session_cache_s=0.2)
    api = await sign_up(client, "henry@example.com")
    assert (await client.get("/api/auth/me", headers=api.headers)).status == 200
    session_id = jwt.decode(api.token, options={"verify_signature": False})["sid"]
    await client.app[appkeys.STORE].revoke_session(session_id)  # as another process's logout would
    await asyncio.sleep(0.25)
    assert (await client.get("/api/auth/me", headers=api.headers)).status == 401
