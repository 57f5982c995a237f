"""Every number a client sends that becomes an index or a bound (Last-Event-ID as header, query and WebSocket
field; page limits and cursors; a batch's seq) is ASCII digits within its range, or a 400 that changes nothing.
A negative Last-Event-ID once replayed a reply's tail (read as a Python slice from the end); Unicode digits
passed str.isdigit and then either failed int() (a 500) or were read as another number."""

from __future__ import annotations

import json
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient

from ..conftest import Api, MakeClient, quick_user, same_origin
from .test_migration import alpha_user, history, new_job, wait_for

BAD_NUMBERS = ["-3", "-1", "+3", "3.0", "1e3", "0x10", "²", "٣", "3 4", "1" * 13]


async def _finished_reply(api: Api) -> str:
    events, _ = await api.stream("a reply to resume with odd ids")
    assert events[-1].name == "done"
    return str(events[0].data["messageId"])


@pytest.mark.parametrize("raw", BAD_NUMBERS)
async def test_a_bad_last_event_id_header_is_400_never_a_tail(make_client: MakeClient, raw: str) -> None:
    client = await make_client()
    alice = await quick_user(client, "alice@example.com")
    message_id = await _finished_reply(alice)
    resp = await client.get(f"/api/chat/streams/{message_id}/events", headers={**alice.headers, "Last-Event-ID": raw})
    assert resp.status == 400, await resp.text()
    error = (await resp.json())["error"]
    assert error["code"] == "invalid_request" and "Last-Event-ID" in error["message"]


@pytest.mark.parametrize("raw", BAD_NUMBERS)
async def test_a_bad_last_event_id_query_is_400(make_client: MakeClient, raw: str) -> None:
    client = await make_client()
    alice = await quick_user(client, "alice@example.com")
    message_id = await _finished_reply(alice)
    resp = await client.get(f"/api/chat/streams/{message_id}/events", params={"lastEventId": raw}, headers=alice.headers)
    assert resp.status == 400, await resp.text()
    assert (await resp.json())["error"]["code"] == "invalid_request"


async def test_good_last_event_ids_still_resume_exactly(make_client: MakeClient) -> None:
    client = await make_client()
    alice = await quick_user(client, "alice@example.com")
    events, _ = await alice.stream("resume me from the middle")
    message_id, last = events[0].data["messageId"], events[-1].id
    assert last is not None
    status, resumed = await alice.resume(message_id, 3)
    assert status == 200 and [e.id for e in resumed] == list(range(4, last + 1))
    resp = await client.get(f"/api/chat/streams/{message_id}/events", params={"lastEventId": " 0 "}, headers=alice.headers)
    assert resp.status == 200
    assert (await alice.resume(message_id, last))[0] == 204


async def _ws(client: TestClient, api: Api) -> aiohttp.ClientWebSocketResponse:
    return await client.ws_connect("/ws", headers={**api.headers, **same_origin(client)})


async def _frame(ws: aiohttp.ClientWebSocketResponse) -> dict[str, Any]:
    message = await ws.receive(timeout=10)
    frame: dict[str, Any] = json.loads(message.data)
    return frame


@pytest.mark.parametrize("value", [-3, -1, 10**12, 10**40, 2.0, "3", True])
async def test_a_bad_websocket_last_event_id_is_an_error_frame_and_nothing_is_replayed(
    make_client: MakeClient, value: object
) -> None:
    client = await make_client()
    alice = await quick_user(client, "alice@example.com")
    message_id = await _finished_reply(alice)
    ws = await _ws(client, alice)
    await ws.send_str(json.dumps({"type": "resume", "messageId": message_id, "lastEventId": value}))
    frame = await _frame(ws)
    assert frame["type"] == "error" and frame["data"]["code"] == "invalid_request" and "id" not in frame, frame
    # the socket stays, and a good resume after it starts exactly where it says
    await ws.send_str(json.dumps({"type": "resume", "messageId": message_id, "lastEventId": 2}))
    first = await _frame(ws)
    assert first["id"] == 3 and first["messageId"] == message_id
    await ws.close()


@pytest.mark.parametrize("query", ["limit=²", "limit=٣", "limit=-1", "limit=%2B5"])
async def test_chat_page_limits_take_ascii_digits_only(make_client: MakeClient, query: str) -> None:
    client = await make_client()
    alice = await quick_user(client, "alice@example.com")
    resp = await client.get(f"/api/chats?{query}", headers=alice.headers)
    assert resp.status == 400 and (await resp.json())["error"]["code"] == "invalid_request"


@pytest.mark.parametrize("params", [{"limit": "²"}, {"limit": "٣"}, {"cursor": "²"}, {"cursor": "-5"}, {"cursor": "١٠"}])
async def test_search_limits_and_cursors_take_ascii_digits_only(make_client: MakeClient, params: dict[str, str]) -> None:
    client = await make_client()
    alice = await quick_user(client, "alice@example.com")
    resp = await client.get("/api/search", params={"q": "tides", **params}, headers=alice.headers)
    assert resp.status == 400 and (await resp.json())["error"]["code"] == "invalid_request"


@pytest.mark.parametrize("seq", ["²", "٣", "-1", "+1"])
async def test_a_batch_seq_takes_ascii_digits_only_and_queues_nothing(make_client: MakeClient, seq: str) -> None:
    client = await make_client(migration_enabled=True, rate_limits="migration=600/min/100")
    alice = await alpha_user(client)
    job_id = await new_job(alice)
    resp = await client.put(f"/api/migration/jobs/{job_id}/batches/{seq}", json={"conversations": history(1, 2)},
                            headers=alice.headers)
    assert resp.status == 400 and (await resp.json())["error"]["code"] == "invalid_request"
    await client.post(f"/api/migration/jobs/{job_id}/complete", headers=alice.headers)
    job = await wait_for(client, alice, job_id, "done")
    assert job["imported"] == 0
