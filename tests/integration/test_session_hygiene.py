"""A logout ends that login session's open streams and WebSockets, in this process and in the others."""

from __future__ import annotations

import asyncio

from aiohttp import WSMsgType

from ..conftest import Api, MakeClient, log_in, same_origin, sign_up
from ..sse import ends_soon, read_until

SLOW = {"demo_tokens_per_s": 20, "demo_reply_words": 400}


async def _logout(api: Api) -> None:
    resp = await api.client.post("/api/auth/logout", headers=api.headers)
    assert resp.status == 204


async def test_logout_ends_the_sessions_streams_and_sockets_but_not_other_sessions(make_client: MakeClient) -> None:
    client = await make_client(**SLOW)
    tab = await sign_up(client, "alice@example.com")
    other_device = await log_in(client, "alice@example.com")  # another login session of the same user
    mine = await client.post("/api/chat/stream", json={"content": "long one"}, headers=tab.headers)
    first = await read_until(mine, lambda ev: len(ev) >= 2)
    follower = await client.get(f"/api/chat/streams/{first[0].data['messageId']}/events", headers=tab.headers)
    theirs = await client.post("/api/chat/stream", json={"content": "keep going"}, headers=other_device.headers)
    await read_until(theirs, lambda ev: len(ev) >= 2)
    ws = await client.ws_connect("/ws", headers={**tab.headers, **same_origin(client)})
    await _logout(tab)
    assert await ends_soon(mine) and await ends_soon(follower)
    closed = await asyncio.wait_for(ws.receive(), 2)
    assert closed.type == WSMsgType.CLOSE and closed.data == 1008 and closed.extra == "session ended"
    assert not await ends_soon(theirs)  # the other device's stream goes on
    resumed = await client.get(f"/api/chat/streams/{first[0].data['messageId']}/events",
                               headers={**tab.headers, "Last-Event-ID": "1"})
    assert resumed.status == 401  # a reconnect with the ended session's token is refused


async def test_logout_through_one_process_ends_the_stream_on_another(make_client: MakeClient, redis_url: str) -> None:
    one = await make_client(redis_url=redis_url, **SLOW)
    two = await make_client(redis_url=redis_url, **SLOW)
    alice = await sign_up(one, "alice@example.com")
    on_two = Api(two, alice.token, alice.user)
    stream = await two.post("/api/chat/stream", json={"content": "far away"}, headers=on_two.headers)
    await read_until(stream, lambda ev: len(ev) >= 2)
    await _logout(alice)
    assert await ends_soon(stream)
