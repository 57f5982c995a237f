"""Every bad input gets its JSON error and changes nothing."""

from __future__ import annotations

from typing import Any

import pytest

from ..conftest import Api, MakeClient, sign_up


async def _chat_state(api: Api) -> Any:
    chats = (await (await api.client.get("/api/chats", headers=api.headers)).json())["chats"]
    return [(c["id"], await api.messages(c["id"])) for c in chats]


def _raw(api: Api, data: bytes, content_type: str = "application/json") -> dict[str, Any]:
    return {"data": data, "headers": {**api.headers, "Content-Type": content_type}}


@pytest.mark.parametrize(
    ("data", "status", "code"),
    [
        (b"{not json", 400, "invalid_request"),
        (b"[1, 2]", 400, "invalid_request"),
        (b'{"content": 5}', 400, "invalid_request"),
        (b'{"content": true}', 400, "invalid_request"),
        (b'{"content": "hi", "extra": 1}', 400, "invalid_request"),
        (b'{"content": "   "}', 400, "invalid_request"),
        (b"{}", 400, "invalid_request"),
        (b'{"content": "hi", "chatId": "no such chat"}', 400, "invalid_request"),
        (b'{"content": "hi", "messageId": "bad/id"}', 400, "invalid_request"),
        (b'{"content": "hi", "chatId": "unknownchat"}', 404, "not_found"),
        (b'{"content": "' + b"x" * (32 * 1024 + 1) + b'"}', 413, "payload_too_large"),
        (b'{"content": "' + b"x" * (300 * 1024) + b'"}', 413, "payload_too_large"),
        (b'{"content": "\xff\xfe"}', 400, "invalid_request"),
    ],
)
async def test_bad_stream_requests(make_client: MakeClient, data: bytes, status: int, code: str) -> None:
    client = await make_client()
    alice = await sign_up(client, "alice@example.com")
    await alice.stream("an existing chat")
    before = await _chat_state(alice)
    resp = await client.post("/api/chat/stream", **_raw(alice, data))
    assert resp.status == status
    error = (await resp.json())["error"]
    assert error["code"] == code and error["message"] and error["traceId"] == resp.headers["X-Trace-Id"]
    assert await _chat_state(alice) == before


async def test_wrong_content_type_is_415(alice: Api) -> None:
    resp = await alice.client.post("/api/chat/stream", **_raw(alice, b'{"content": "hi"}', "text/plain"))
    assert resp.status == 415 and (await resp.json())["error"]["code"] == "unsupported_media_type"


async def test_someone_elses_chat_is_404_and_untouched(alice: Api, bob: Api) -> None:
    events, _ = await alice.stream("alice's private chat")
    chat_id, message_id = events[0].data["chatId"], events[0].data["messageId"]
    before = await _chat_state(alice)
    for method, path, kwargs in [
        ("GET", f"/api/chats/{chat_id}/messages", {}),
        ("DELETE", f"/api/chats/{chat_id}", {}),
        ("PATCH", f"/api/chats/{chat_id}", {"json": {"title": "bob's now"}}),
        ("POST", "/api/chat/stream", {"json": {"content": "sneak in", "chatId": chat_id}}),
        ("GET", f"/api/chat/streams/{message_id}/events", {}),
        ("POST", f"/api/chat/streams/{message_id}/cancel", {}),
    ]:
        resp = await bob.client.request(method, path, headers=bob.headers, **kwargs)
        assert resp.status == 404, (method, path)
        assert (await resp.json())["error"]["code"] == "not_found"
    assert (await (await bob.client.get("/api/chats", headers=bob.headers)).json())["chats"] == []
    assert await _chat_state(alice) == before


async def test_unknown_and_malformed_ids_are_404(alice: Api) -> None:
    for path in ["/api/chat/streams/nope/events", "/api/chat/streams/bad%20id/events", "/api/chats/nope/messages"]:
        resp = await alice.client.get(path, headers=alice.headers)
        assert resp.status == 404 and (await resp.json())["error"]["code"] == "not_found"


async def test_bad_last_event_id_is_400(alice: Api) -> None:
    events, _ = await alice.stream("resume with junk")
    resp = await alice.client.get(
        f"/api/chat/streams/{events[0].data['messageId']}/events", headers={**alice.headers, "Last-Event-ID": "-3"}
    )
    assert resp.status == 400


async def test_idempotency_key_must_be_visible_ascii(alice: Api) -> None:
    resp = await alice.client.post(
        "/api/chat/stream", json={"content": "x"}, headers={**alice.headers, "Idempotency-Key": "a" * 129}
    )
    assert resp.status == 400


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"email": "not-an-email", "password": "long enough pw"}, 400),
        ({"email": "a@example.com", "password": "short"}, 400),
        ({"email": "a@example.com", "password": "long enough pw", "admin": True}, 400),
        ({"email": "a@example.com"}, 400),
        ({"email": "a@example.com", "password": 12345678}, 400),
        ({"email": "a@example.com", "password": "p" * 257}, 400),
    ],
)
async def test_bad_signups_change_nothing(make_client: MakeClient, body: dict[str, Any], status: int) -> None:
    client = await make_client()
    resp = await client.post("/api/auth/signup", json=body)
    assert resp.status == status and (await resp.json())["error"]["code"] == "invalid_request"
    login = await client.post("/api/auth/login", json={"email": "a@example.com", "password": "long enough pw"})
    assert login.status == 401


async def test_chat_endpoints_validate_input(alice: Api) -> None:
    resp = await alice.client.post("/api/chats", json={"title": 7}, headers=alice.headers)
    assert resp.status == 400
    resp = await alice.client.post("/api/chats", json={"title": "t" * 201}, headers=alice.headers)
    assert resp.status == 400
    for query in ("limit=0", "limit=101", "limit=abc", "before=bad%20id"):
        assert (await alice.client.get(f"/api/chats?{query}", headers=alice.headers)).status == 400


async def test_sse_data_cannot_be_injected_through_content(make_client: MakeClient) -> None:
    from gima_server.agents.base import AgentRequest, delta

    class EchoAgent:
        async def stream(self, request: AgentRequest):  # type: ignore[no-untyped-def]
            yield delta("echo", request.content)

        async def close(self) -> None:
            return None

    client = await make_client(agent=EchoAgent())
    alice = await sign_up(client, "alice@example.com")
    nasty = 'hi\n\ndata: {"injected":true}\r\nevent: done\rid: 999\n\n'
    events, _ = await alice.stream(nasty)
    assert [e.name for e in events] == ["meta", "delta", "done"]
    assert [e.id for e in events] == [1, 2, 3]
    assert events[1].data["text"] == nasty and events[2].data["content"] == nasty
