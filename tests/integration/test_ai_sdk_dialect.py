"""The AI SDK's real client (npm `ai`, run by Node) against a live server: DefaultChatTransport sends, every part
passes the SDK's own schema and readUIMessageStream, a cut stream is resumed with reconnectToStream to the same
final text, 204 when nothing runs, and the stop route ends the reply with its receipt."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from gima_server.dialects.ui_routes import stored_chat_id

from ..conftest import Api, MakeClient, quick_user
from ..js_clients import install_js_clients, run_node


@pytest.fixture(scope="session")
def js_clients() -> Path:
    return install_js_clients()


async def _client(client: TestClient, person: Api, scenario: str, chat_id: str) -> dict[str, Any]:
    return await run_node("ai_sdk_client.mjs", str(client.make_url("")).rstrip("/"), person.token, scenario, chat_id)


async def _stored(person: Api, chat_id: str) -> list[dict[str, Any]]:
    return await person.messages(stored_chat_id(person.user["id"], chat_id))


async def test_the_transport_sends_and_the_sdk_accepts_every_part(make_client: MakeClient, js_clients: Path) -> None:
    client = await make_client(demo_reply_words=40)
    alice = await quick_user(client, "alice@example.com")
    seen = await _client(client, alice, "send", "chat-1")
    types = seen["types"]
    assert types[:2] == ["start", "start-step"] and types[-2:] == ["finish-step", "finish"]
    assert types.count("text-start") == types.count("text-end") >= 3  # one text part per agent section
    stored = await _stored(alice, "chat-1")
    assert [m["role"] for m in stored] == ["user", "assistant"] and stored[1]["status"] == "complete"
    assert stored[0]["content"] == "Explain the tides"
    assert seen["text"] == stored[1]["content"] and seen["id"] == stored[1]["id"]  # the same stored message
    again = await _client(client, alice, "send", "chat-1")  # the same client chat: the same stored chat
    assert len(await _stored(alice, "chat-1")) == 4 and again["text"]


async def test_a_cut_stream_is_resumed_to_the_same_final_text(make_client: MakeClient, js_clients: Path) -> None:
    client = await make_client(demo_tokens_per_s=40, demo_reply_words=60)
    alice = await quick_user(client, "alice@example.com")
    seen = await _client(client, alice, "cut-and-resume", "chat-2")
    assert seen["types"][0] == "start" and seen["types"][-1] == "finish"  # replayed from its start
    stored = await _stored(alice, "chat-2")
    assert stored[-1]["status"] == "complete" and seen["text"] == stored[-1]["content"]
    assert seen["text"].startswith(seen["before"]) and len(seen["before"]) < len(seen["text"])


async def test_nothing_running_is_204_also_for_an_unknown_chat(make_client: MakeClient, js_clients: Path) -> None:
    client = await make_client()
    alice = await quick_user(client, "alice@example.com")
    await _client(client, alice, "send", "chat-3")
    assert (await _client(client, alice, "nothing-runs", "chat-3")) == {"resumed": None}
    assert (await _client(client, alice, "nothing-runs", "never-seen")) == {"resumed": None}


async def test_stop_ends_the_reply_with_its_receipt(make_client: MakeClient, js_clients: Path) -> None:
    client = await make_client(demo_tokens_per_s=40, demo_reply_words=300)
    alice = await quick_user(client, "alice@example.com")
    seen = await _client(client, alice, "stop", "chat-4")
    assert seen["types"][-2:] == ["message-metadata", "abort"]
    assert seen["metadata"]["upstreamClosed"] is True and seen["metadata"]["usage"]["outputTokens"] >= 2
    stored = await _stored(alice, "chat-4")
    assert stored[-1]["status"] == "cancelled" and stored[-1]["content"] == seen["text"]


async def test_another_users_chat_id_is_their_own_chat(make_client: MakeClient) -> None:
    """The same client chat id from two users names two chats: nothing of one reaches the other."""
    client = await make_client(demo_reply_words=10)
    alice, bob = await quick_user(client, "alice@example.com"), await quick_user(client, "bob@example.com")
    body = {"id": "shared-name", "trigger": "submit-message",
            "messages": [{"id": "m1", "role": "user", "parts": [{"type": "text", "text": "alice's secret"}]}]}
    resp = await client.post("/api/chat", json=body, headers=alice.headers)
    assert resp.status == 200 and resp.headers["x-vercel-ai-ui-message-stream"] == "v1"
    assert (await resp.text()).endswith("data: [DONE]\n\n")
    assert (await client.get("/api/chat/shared-name/stream", headers=bob.headers)).status == 204
    assert (await client.post("/api/chat/shared-name/stop", headers=bob.headers)).status == 204
    chats = (await (await client.get("/api/chats", headers=bob.headers)).json())["chats"]
    assert chats == []
    body["messages"][0]["parts"][0]["text"] = "bob's own"
    resp = await client.post("/api/chat", json=body, headers=bob.headers)
    await resp.read()
    [bobs] = (await (await client.get("/api/chats", headers=bob.headers)).json())["chats"]
    assert "secret" not in str(await bob.messages(bobs["id"]))


@pytest.mark.parametrize("body", [
    {"messages": [{"id": "m", "role": "user", "parts": [{"type": "text", "text": "hi"}]}]},
    {"id": "", "messages": [{"id": "m", "role": "user", "parts": [{"type": "text", "text": "hi"}]}]},
    {"id": "c", "messages": []},
    {"id": "c", "messages": [{"id": "m", "role": "assistant", "parts": [{"type": "text", "text": "hi"}]}]},
    {"id": "c", "messages": [{"id": "m", "role": "user", "parts": "hi"}]},
    {"id": "c", "messages": [{"id": "m", "role": "user", "parts": [{"type": "file", "url": "x", "mediaType": "a/b"}]}]},
    {"id": "c", "messages": [{"id": "m", "role": "user", "parts": [{"type": "text", "text": 5}]}]},
    {"id": "c", "trigger": "explode", "messages": [{"id": "m", "role": "user", "parts": [{"type": "text", "text": "x"}]}]},
    {"id": "c", "messages": [{"id": "m", "role": "user", "parts": [{"type": "text", "text": ""}]}]},
    ["not", "an", "object"],
    {"id": "c", "trigger": {"a": 1}, "messages": [{"id": "m", "role": "user", "parts": [{"type": "text", "text": "x"}]}]},
    {"id": "c", "messages": [{"id": "m", "role": ["user"], "parts": [{"type": "text", "text": "x"}]}]},
    {"id": ["c"], "messages": [{"id": "m", "role": "user", "parts": [{"type": "text", "text": "x"}]}]},
])
async def test_malformed_bodies_are_400_and_change_nothing(make_client: MakeClient, body: Any) -> None:
    client = await make_client()
    alice = await quick_user(client, "alice@example.com")
    resp = await client.post("/api/chat", json=body, headers=alice.headers)
    assert resp.status == 400, await resp.text()
    assert (await (await client.get("/api/chats", headers=alice.headers)).json())["chats"] == []
