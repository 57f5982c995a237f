"""API keys for programs: made once, stored as a hash, accepted as Bearer, revoked at once, rate-limited apart."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from gima_server import appkeys

from ..conftest import Api, MakeClient, quick_user
from ..secrets_watch import remember
from ..sse import ends_soon, read_until


async def make_key(user: Api, name: str = "my script") -> dict[str, Any]:
    resp = await user.client.post("/api/keys", json={"name": name}, headers=user.headers)
    assert resp.status == 201, await resp.text()
    assert resp.headers["Cache-Control"] == "no-store"
    body: dict[str, Any] = await resp.json()
    remember(body["key"])
    return body


def as_key(user: Api, key: str) -> Api:
    """The same user, calling as a program with the key."""
    return Api(user.client, key, user.user)


async def test_a_key_is_shown_once_listed_without_it_and_stored_only_as_a_hash(make_client: MakeClient,
                                                                              tmp_path: Path) -> None:
    client = await make_client()
    alice = await quick_user(client, "alice@example.com")
    made = await make_key(alice, "nightly report")
    assert set(made) == {"id", "name", "key", "createdAt"} and made["name"] == "nightly report"
    assert made["key"].startswith("gima_sk_") and len(made["key"]) >= 24
    listed = await (await client.get("/api/keys", headers=alice.headers)).json()
    assert [k["id"] for k in listed["keys"]] == [made["id"]]
    assert made["key"] not in str(listed) and listed["keys"][0]["hint"].startswith("gima_sk_")
    await asyncio.sleep(0)
    raw = b"".join(p.read_bytes() for p in tmp_path.glob("*.sqlite3*"))
    assert made["key"].encode() not in raw  # only its hash is on disk


async def test_a_key_authenticates_the_api_and_the_reply_lands_in_its_owners_history(make_client: MakeClient) -> None:
    client = await make_client()
    alice = await quick_user(client, "alice@example.com")
    program = as_key(alice, (await make_key(alice))["key"])
    events, _ = await program.stream("What is a tide?")
    assert events[-1].name == "done"
    chats = await (await client.get("/api/chats", headers=alice.headers)).json()
    assert chats["chats"][0]["id"] == events[0].data["chatId"]  # seen by the person, in their history
    stored = await alice.messages(events[0].data["chatId"])
    assert [m["role"] for m in stored] == ["user", "assistant"] and stored[1]["content"] == events[-1].data["content"]
    keys = await (await client.get("/api/keys", headers=alice.headers)).json()
    assert keys["keys"][0]["lastUsedAt"] is not None


async def test_a_programs_calls_with_one_key_run_side_by_side(make_client: MakeClient) -> None:
    """One login session has one active reply; a key is not a person typing, so its calls never supersede."""
    client = await make_client(demo_tokens_per_s=200, demo_reply_words=30)
    alice = await quick_user(client, "alice@example.com")
    program = as_key(alice, (await make_key(alice))["key"])
    results = await asyncio.gather(*(program.stream(f"question {n}") for n in range(3)))
    assert [events[-1].name for events, _ in results] == ["done"] * 3


async def test_bad_keys_and_key_management_by_keys_or_guests_are_refused(make_client: MakeClient) -> None:
    client = await make_client(guest_access=True)
    alice = await quick_user(client, "alice@example.com")
    key = (await make_key(alice))["key"]
    for wrong in ("gima_sk_" + "x" * 43, key[:-1], key + "x"):
        resp = await client.get("/api/chats", headers={"Authorization": f"Bearer {wrong}"})
        assert resp.status == 401 and (await resp.json())["error"]["message"] == "invalid API key"
    program = as_key(alice, key)
    for method, path in (("POST", "/api/keys"), ("GET", "/api/keys"), ("DELETE", f"/api/keys/{'k' * 32}")):
        resp = await client.request(method, path, json={"name": "more"}, headers=program.headers)
        assert resp.status == 403, (method, path, await resp.text())  # a leaked key cannot mint or list keys
    guest = await client.post("/api/auth/guest")
    guest_token = (await guest.json())["accessToken"]
    remember(guest_token)
    resp = await client.post("/api/keys", json={"name": "g"}, headers={"Authorization": f"Bearer {guest_token}"})
    assert resp.status == 403
    for body in ({}, {"name": ""}, {"name": "   "}, {"name": "x" * 101}, {"name": 5}, {"name": "a", "extra": 1}):
        resp = await client.post("/api/keys", json=body, headers=alice.headers)
        assert resp.status in (400, 413), (body, resp.status)
    assert len((await (await client.get("/api/keys", headers=alice.headers)).json())["keys"]) == 1  # nothing made


async def test_deleting_a_key_stops_it_at_once_and_ends_its_open_stream(make_client: MakeClient) -> None:
    client = await make_client(demo_tokens_per_s=20, demo_reply_words=200)
    alice = await quick_user(client, "alice@example.com")
    bob = await quick_user(client, "bob@example.com")
    made = await make_key(alice)
    program = as_key(alice, made["key"])
    resp = await client.post("/api/chat/stream", json={"content": "a long answer please"}, headers=program.headers)
    await read_until(resp, lambda events: any(e.name == "delta" for e in events))
    assert (await client.delete(f"/api/keys/{made['id']}", headers=bob.headers)).status == 404  # not bob's
    assert (await client.get("/api/chats", headers=program.headers)).status == 200
    assert (await client.delete(f"/api/keys/{made['id']}", headers=alice.headers)).status == 204
    assert await ends_soon(resp)  # the stream the key opened has ended
    assert (await client.get("/api/chats", headers=program.headers)).status == 401
    assert (await client.delete(f"/api/keys/{made['id']}", headers=alice.headers)).status == 404


async def test_a_key_has_its_own_rate_limit_class(make_client: MakeClient) -> None:
    client = await make_client(rate_limits="api_key=2/min/2")
    alice = await quick_user(client, "alice@example.com")
    program = as_key(alice, (await make_key(alice))["key"])
    for n in range(2):
        events, _ = await program.stream(f"call {n}")
        assert events[-1].name == "done"
    resp = await client.post("/api/chat/stream", json={"content": "one more"}, headers=program.headers)
    assert resp.status == 429 and int(resp.headers["Retry-After"]) >= 1
    events, _ = await alice.stream("the person still chats")  # the key's bucket is not the person's
    assert events[-1].name == "done"


async def test_keys_per_user_are_capped(make_client: MakeClient) -> None:
    from gima_server.apikeys.model import MAX_KEYS_PER_USER

    client = await make_client(rate_limits="default=10000/min/10000")
    alice = await quick_user(client, "alice@example.com")
    for n in range(MAX_KEYS_PER_USER):
        await make_key(alice, f"k{n}")
    resp = await client.post("/api/keys", json={"name": "one too many"}, headers=alice.headers)
    assert resp.status == 409
    assert len(await client.app[appkeys.STORE].list_api_keys(alice.user["id"])) == MAX_KEYS_PER_USER
