"""PATCH /api/chats/{chatId} renames a chat (the page's Rename); GET /api/models says whether voice works here."""

from __future__ import annotations

from typing import Any

import pytest

from ..conftest import Api, MakeClient, sign_up


async def _chats(user: Api) -> list[dict[str, Any]]:
    return list((await (await user.client.get("/api/chats", headers=user.headers)).json())["chats"])


async def test_rename_changes_only_the_title(alice: Api) -> None:
    events, _ = await alice.stream("tides and moons")
    chat_id = events[0].data["chatId"]
    [before] = await _chats(alice)
    resp = await alice.client.patch(f"/api/chats/{chat_id}", json={"title": "  Tides  "}, headers=alice.headers)
    assert resp.status == 200
    chat = (await resp.json())["chat"]
    assert chat["id"] == chat_id and chat["title"] == "Tides" and chat["createdAt"] == before["createdAt"]
    assert [c["title"] for c in await _chats(alice)] == ["Tides"]
    assert len(await alice.messages(chat_id)) == 2  # its messages untouched


@pytest.mark.parametrize("body", [{}, {"title": ""}, {"title": "   "}, {"title": "x" * 201}, {"title": 5},
                                  {"title": "ok", "extra": 1}, [], "title"])
async def test_a_bad_title_is_400_and_changes_nothing(alice: Api, body: Any) -> None:
    events, _ = await alice.stream("a chat to keep")
    chat_id = events[0].data["chatId"]
    before = await _chats(alice)
    resp = await alice.client.patch(f"/api/chats/{chat_id}", json=body, headers=alice.headers)
    assert resp.status == 400, await resp.text()
    assert (await resp.json())["error"]["code"] == "invalid_request"
    assert await _chats(alice) == before


async def test_unknown_chat_is_404(alice: Api) -> None:
    resp = await alice.client.patch("/api/chats/nope", json={"title": "x"}, headers=alice.headers)
    assert resp.status == 404 and (await resp.json())["error"]["code"] == "not_found"


async def test_models_say_whether_voice_is_configured(make_client: MakeClient) -> None:
    for n, (overrides, voice) in enumerate([({}, False), ({"audio_base_url": "http://127.0.0.1:9/v1"}, True)]):
        client = await make_client(**overrides)
        user = await sign_up(client, f"user{n}@example.com")
        body = await (await client.get("/api/models", headers=user.headers)).json()
        assert body["voice"] is voice and body["models"]
