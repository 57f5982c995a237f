"""Bodies no fuzzer thinks of: extreme nesting, lone surrogates, non-finite and huge numbers, every limit and one
past it. Each gets a 4xx JSON error (never a 500) and changes nothing; each limit itself is accepted."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from ..conftest import Api, MakeClient, quick_user

# Each endpoint's fields with a valid value (raw JSON); each hostile value replaces one field at a time.
ENDPOINTS: dict[str, dict[str, str]] = {
    "/api/chat/stream": {"content": '"hello"'},
    "/api/chats": {"title": '"a title"'},
    "/api/auth/login": {"email": '"a@example.com"', "password": '"correct horse battery"'},
    "/api/auth/signup": {"email": '"new@example.com"', "password": '"correct horse battery"'},
    "/api/migration/jobs": {"source": '"indexeddb"', "totalConversations": "3"},
}
HOSTILE: dict[str, str] = {
    "deep-nesting": "[" * 100_000 + "]" * 100_000,
    "deep-objects": '{"a":' * 50_000 + "1" + "}" * 50_000,
    "lone-surrogate": '"hi \\ud800 there"',
    "lone-low-surrogate": '"\\udfff"',
    "nan": "NaN",
    "infinity": "-Infinity",
    "huge-int": "1" + "0" * 5000,
    "huge-float": "1e400",
    "nul-bytes": '"a\\u0000b"',
    "huge-string": '"' + "x" * 300_000 + '"',
}


def _bodies(case: str) -> list[tuple[str, str, bytes]]:
    out = []
    for path, fields in ENDPOINTS.items():
        for hostile_field in fields:
            parts = [f'"{name}": {HOSTILE[case] if name == hostile_field else value}' for name, value in fields.items()]
            out.append((path, hostile_field, ("{" + ", ".join(parts) + "}").encode()))
    return out


async def _client(make_client: MakeClient) -> tuple[TestClient, Api]:
    client = await make_client(migration_enabled=True)
    api = await quick_user(client, "fuzzed@example.com")
    from gima_server import appkeys

    await client.app[appkeys.STORE].set_roles(api.user["id"], ("user", "alpha"))
    return client, api


async def _state(api: Api) -> Any:
    chats = (await (await api.client.get("/api/chats", headers=api.headers)).json())["chats"]
    return [(c["id"], await api.messages(c["id"])) for c in chats]


@pytest.mark.parametrize("case", sorted(HOSTILE))
async def test_hostile_bodies_get_a_clear_4xx_and_change_nothing(make_client: MakeClient, case: str) -> None:
    client, api = await _client(make_client)
    before = await _state(api)
    origin = str(client.make_url("")).rstrip("/")
    for path, field, body in _bodies(case):
        headers = {"Content-Type": "application/json", "Origin": origin}
        if not path.startswith("/api/auth/"):
            headers.update(api.headers)
        resp = await client.post(path, data=body, headers=headers)
        text = await resp.text()
        assert 400 <= resp.status < 500, (case, path, field, resp.status, text[:300])
        assert resp.content_type == "application/json" and '"error"' in text, (case, path, field, text[:200])
    assert await _state(api) == before


async def test_every_limit_is_accepted_and_one_past_it_is_refused(make_client: MakeClient) -> None:
    client = await make_client(max_content_bytes=2000, demo_tokens_per_s=0, demo_first_token_ms=0)
    api = await quick_user(client, "limits@example.com")
    at = await client.post("/api/chat/stream", json={"content": "é" * 1000}, headers=api.headers)  # 2,000 bytes
    assert at.status == 200
    await at.read()
    past = await client.post("/api/chat/stream", json={"content": "é" * 1000 + "x"}, headers=api.headers)
    assert past.status == 413
    ids = {"chatId": "a" * 64, "messageId": "b" * 64}
    for field, value in ids.items():  # an id at its length limit is a well-formed id (404: no such chat)
        resp = await client.post("/api/chat/stream", json={"content": "x", field: value}, headers=api.headers)
        assert resp.status in (200, 404), (field, resp.status)
        await resp.read()
        over = await client.post("/api/chat/stream", json={"content": "x", field: value + "c"}, headers=api.headers)
        assert over.status == 400, field
    title_ok = await client.post("/api/chats", json={"title": "t" * 200}, headers=api.headers)
    title_over = await client.post("/api/chats", json={"title": "t" * 201}, headers=api.headers)
    assert (title_ok.status, title_over.status) in ((201, 400), (200, 400)), (title_ok.status, title_over.status)


@pytest.mark.parametrize("case", ["deep-nesting", "lone-surrogate", "nan", "huge-int"])
async def test_hostile_migration_batches_get_400_and_import_nothing(make_client: MakeClient, case: str) -> None:
    client, api = await _client(make_client)
    job = await client.post("/api/migration/jobs", json={"source": "indexeddb"}, headers=api.headers)
    job_id = (await job.json())["job"]["id"]
    conversation = ('{"id": "c1", "title": "t", "createdAt": ' + (HOSTILE[case] if case in ("nan", "huge-int") else "1")
                    + ', "messages": [{"role": "user", "content": '
                    + (HOSTILE[case] if case not in ("nan", "huge-int") else '"x"') + ', "createdAt": 1}]}')
    body = ('{"conversations": [' + conversation + "]}").encode()
    resp = await client.put(f"/api/migration/jobs/{job_id}/batches/0", data=body,
                            headers={**api.headers, "Content-Type": "application/json"})
    assert 400 <= resp.status < 500, (case, resp.status, (await resp.text())[:300])
    assert (await (await client.get("/api/chats", headers=api.headers)).json())["chats"] == []
