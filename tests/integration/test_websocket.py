"""The same replies over /ws: send, resume, cancel, limits and the cross-origin check."""

from __future__ import annotations

import json
from typing import Any

import aiohttp
from aiohttp.test_utils import TestClient

from ..conftest import Api, MakeClient, quick_user, same_origin


async def _frames_until_end(ws: aiohttp.ClientWebSocketResponse) -> list[dict[str, Any]]:
    frames = []
    while True:
        frame = json.loads((await ws.receive(timeout=10)).data)
        frames.append(frame)
        if frame["type"] in ("done", "error") and "id" in frame:
            return frames


async def _open(client: TestClient, api: Api) -> aiohttp.ClientWebSocketResponse:
    return await client.ws_connect("/ws", headers={**api.headers, **same_origin(client)})


async def test_send_streams_the_same_events_as_sse(make_client: MakeClient) -> None:
    client = await make_client()
    alice = await quick_user(client, "alice@example.com")
    ws = await _open(client, alice)
    await ws.send_str(json.dumps({"type": "send", "content": "Tell me about tides over a socket"}))
    frames = await _frames_until_end(ws)
    assert [f["id"] for f in frames] == list(range(1, len(frames) + 1))
    assert frames[0]["type"] == "meta" and frames[-1]["type"] == "done"
    text = "".join(f["data"]["text"] for f in frames if f["type"] == "delta")
    assert frames[-1]["data"]["content"] == text and "tides" in text
    message_id = frames[0]["messageId"]
    assert all(f["messageId"] == message_id for f in frames)
    # resume from the middle, on the same socket
    await ws.send_str(json.dumps({"type": "resume", "messageId": message_id, "lastEventId": 5}))
    resumed = await _frames_until_end(ws)
    assert [f["id"] for f in resumed] == list(range(6, len(frames) + 1))
    await ws.close()


async def test_cancel_over_the_socket(make_client: MakeClient) -> None:
    client = await make_client(demo_tokens_per_s=100, demo_reply_words=200)
    alice = await quick_user(client, "alice@example.com")
    ws = await _open(client, alice)
    await ws.send_str(json.dumps({"type": "send", "content": "a long one"}))
    meta = json.loads((await ws.receive(timeout=10)).data)
    await ws.send_str(json.dumps({"type": "cancel", "messageId": meta["messageId"]}))
    frames = await _frames_until_end(ws)
    assert frames[-1]["type"] == "error" and frames[-1]["data"]["code"] == "cancelled"
    await ws.close()


async def test_bad_frames_get_an_error_frame_and_the_socket_stays(make_client: MakeClient) -> None:
    client = await make_client(max_body_bytes=512 * 1024)
    alice = await quick_user(client, "alice@example.com")
    bob = await quick_user(client, "bob@example.com")
    ws = await _open(client, alice)
    hostile = ['{"type": "send", "content": ' + "[" * 50_000 + "]" * 50_000 + "}",  # deeper than the parser goes
               '{"type": "send", "content": "lone \\ud800 surrogate"}', '{"type": "send", "content": "a\\u0000b"}']
    for bad in ("not json", json.dumps({"type": "dance"}), json.dumps({"type": "send", "content": 5}),
                json.dumps({"type": "send", "content": "x", "extra": 1}), *hostile):
        await ws.send_str(bad)
        frame = json.loads((await ws.receive(timeout=10)).data)
        assert frame["type"] == "error" and frame["data"]["code"] == "invalid_request" and "id" not in frame
    bob_ws = await _open(client, bob)
    await bob_ws.send_str(json.dumps({"type": "send", "content": "bob's"}))
    bobs = await _frames_until_end(bob_ws)
    await ws.send_str(json.dumps({"type": "resume", "messageId": bobs[0]["messageId"], "lastEventId": 0}))
    frame = json.loads((await ws.receive(timeout=10)).data)
    assert frame["data"]["code"] == "not_found"  # someone else's reply
    await ws.close()
    await bob_ws.close()


async def test_auth_origin_and_socket_limit(make_client: MakeClient) -> None:
    client = await make_client(ws_max_sockets=1)
    alice = await quick_user(client, "alice@example.com")
    anonymous = await client.get("/ws", headers={"Connection": "Upgrade", "Upgrade": "websocket"})
    assert anonymous.status == 401
    foreign = await client.get("/ws", headers={**alice.headers, "Origin": "https://evil.example"})
    assert foreign.status == 403 and (await foreign.json())["error"]["code"] == "forbidden"
    first = await _open(client, alice)
    refused = await client.get("/ws", headers={**alice.headers, **same_origin(client), "Connection": "Upgrade",
                                                "Upgrade": "websocket", "Sec-WebSocket-Version": "13",
                                                "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="})
    assert refused.status == 503 and refused.headers["Retry-After"]
    await first.close()
