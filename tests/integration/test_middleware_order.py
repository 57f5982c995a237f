"""Every body-reading step before a handler (Idempotency-Key, the origin check, limits) leaves the body for the
handler: each JSON write endpoint works with an Idempotency-Key, including a large migration batch."""

from __future__ import annotations

import json
from typing import Any

from gima_server import appkeys

from ..conftest import MakeClient, quick_user


def _conversations(count: int, chars: int) -> list[dict[str, Any]]:
    return [{"id": f"c{i}", "title": f"t{i}", "createdAt": 1_700_000_000 + i,
             "messages": [{"role": "user", "content": "x" * chars, "createdAt": 1_700_000_000 + i}]}
            for i in range(count)]


async def test_writes_with_an_idempotency_key_reach_their_handler_with_the_body(make_client: MakeClient) -> None:
    client = await make_client(migration_enabled=True, max_body_bytes=64 * 1024)
    api = await quick_user(client, "writer@example.com")
    await client.app[appkeys.STORE].set_roles(api.user["id"], ("user", "alpha"))
    created = await client.post("/api/chats", json={"title": "kept"},
                                headers={**api.headers, "Idempotency-Key": "chat-1"})
    assert created.status == 201, await created.text()
    replay = await client.post("/api/chats", json={"title": "kept"}, headers={**api.headers, "Idempotency-Key": "chat-1"})
    assert replay.status == 201 and (await replay.json()) == (await created.json())
    job = await client.post("/api/migration/jobs", json={"source": "indexeddb"},
                            headers={**api.headers, "Idempotency-Key": "job-1"})
    assert job.status == 201, await job.text()
    job_id = (await job.json())["job"]["id"]
    for seq, (count, chars) in enumerate([(2, 10), (40, 20_000)]):  # small, then 800 KB: past max_body_bytes
        body = json.dumps({"conversations": _conversations(count, chars)}).encode()
        resp = await client.put(f"/api/migration/jobs/{job_id}/batches/{seq}", data=body,
                                headers={**api.headers, "Content-Type": "application/json",
                                         "Idempotency-Key": f"batch-{seq}"})
        assert resp.status == 202, (seq, len(body), resp.status, await resp.text())
