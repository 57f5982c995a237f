"""Clients that try to hold the server's resources: every WebSocket slot, a socket with headers or a body that
never finish. Each is cut or refused; everyone else goes on."""

from __future__ import annotations

import asyncio
import subprocess
import time
from pathlib import Path

import aiohttp
import pytest

from ..conftest import MakeClient, quick_user, same_origin
from ..processes import wait_healthy
from .test_cli import _env, _free_port, _sign_up


async def test_one_user_cannot_take_every_websocket_slot(make_client: MakeClient) -> None:
    client = await make_client(ws_max_sockets=10, ws_max_sockets_per_user=2)
    mallory, alice = await quick_user(client, "mallory@example.com"), await quick_user(client, "alice@example.com")
    held = [await client.ws_connect("/ws", headers={**mallory.headers, **same_origin(client)}) for _ in range(2)]
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await client.ws_connect("/ws", headers={**mallory.headers, **same_origin(client)})
    assert refused.value.status == 429
    other = await client.ws_connect("/ws", headers={**alice.headers, **same_origin(client)})  # others still get in
    await held[0].close()
    again = await client.ws_connect("/ws", headers={**mallory.headers, **same_origin(client)})  # a slot came back
    for ws in (*held, other, again):
        await ws.close()


async def test_a_body_that_never_finishes_gets_408(make_client: MakeClient) -> None:
    client = await make_client(body_timeout_s=0.5)
    reader, writer = await asyncio.open_connection("127.0.0.1", client.port)
    started = time.monotonic()
    writer.write(b"POST /api/auth/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 b"Content-Length: 200\r\n\r\n{\"email\": \"a@exa")
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    writer.close()
    assert head.split(b"\r\n", 1)[0].endswith(b"408 Request Timeout") and time.monotonic() - started < 3


async def test_slow_headers_are_cut_but_a_long_stream_is_not(tmp_path: Path) -> None:
    port = _free_port()
    proc = subprocess.Popen(
        ["gima-server", "--port", str(port)],
        env=_env(tmp_path, GIMA_IDLE_CONNECTION_TIMEOUT_S="1", GIMA_DEMO_TOKENS_PER_S="20", GIMA_DEMO_REPLY_WORDS="50",
                 GIMA_RATE_LIMITS="auth=1000/min/1000"),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as session:
            await wait_healthy(session, base, proc)
            token = await _sign_up(session, base, "patient@example.com")
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"GET /health HTTP/1.1\r\nHost: x\r\n")
            started = time.monotonic()
            cut = False
            for _ in range(20):  # one header line every 0.3 s: never a complete request
                await asyncio.sleep(0.3)
                try:
                    writer.write(b"X-Slow: drip\r\n")
                    await writer.drain()
                except ConnectionError:
                    cut = True
                    break
                if reader.at_eof() or (await _closed(reader)):
                    cut = True
                    break
            writer.close()
            assert cut and time.monotonic() - started < 4
            async with session.post(f"{base}/api/chat/stream", json={"content": "take your time"},
                                    headers={"Authorization": f"Bearer {token}"}) as resp:
                body = await resp.read()  # about 3 s of events, longer than the idle timeout
            assert resp.status == 200 and b"event: done" in body
    finally:
        proc.terminate()
        proc.communicate(timeout=30)


async def _closed(reader: asyncio.StreamReader) -> bool:
    try:
        data = await asyncio.wait_for(reader.read(1), 0.05)
    except TimeoutError:
        return False
    return data == b""
