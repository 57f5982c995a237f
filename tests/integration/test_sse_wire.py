"""What goes over the wire: heartbeats, batched writes, a lone event without delay, a gone client noticed."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import aiohttp
import pytest

from gima_server.config import Settings
from gima_server.streams.sse import BatchingEventSourceResponse

from ..cluster import start_cluster
from ..conftest import MakeClient, sign_up
from ..secrets_watch import remember
from ..sse import parse_sse


@pytest.fixture
def writes(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """Every write of frames: awaited ones (send_frames) and those pushed straight to the socket (write_now)."""
    seen: list[bytes] = []
    send_frames, write_now = BatchingEventSourceResponse.send_frames, BatchingEventSourceResponse.write_now

    async def counting(self: BatchingEventSourceResponse, frames: bytes) -> None:
        seen.append(frames)
        await send_frames(self, frames)

    def counting_now(self: BatchingEventSourceResponse, frames: bytes) -> None:
        seen.append(frames)
        write_now(self, frames)

    monkeypatch.setattr(BatchingEventSourceResponse, "send_frames", counting)
    monkeypatch.setattr(BatchingEventSourceResponse, "write_now", counting_now)
    return seen


async def test_heartbeat_comments_while_the_reply_is_quiet(make_client: MakeClient) -> None:
    client = await make_client(heartbeat_s=0.1, demo_first_token_ms=450, demo_reply_words=5)
    alice = await sign_up(client, "alice@example.com")
    resp = await client.post("/api/chat/stream", json={"content": "wait for it"}, headers=alice.headers)
    events, extras = parse_sse(await resp.read())
    assert extras.count(": ping") >= 3 and events[-1].name == "done"


async def test_waiting_events_go_out_in_one_write_each_with_its_id(make_client: MakeClient, writes: list[bytes]) -> None:
    client = await make_client(demo_reply_words=2000)
    alice = await sign_up(client, "alice@example.com")
    events, _ = await alice.stream("a reply that outpaces the network")
    assert [e.id for e in events] == list(range(1, len(events) + 1))
    assert len(writes) < len(events) / 3  # many events per write when the reply runs ahead
    assert b"".join(writes).count(b"\nid: ") + 1 >= len(events)


async def test_a_lone_event_goes_out_at_once(make_client: MakeClient, writes: list[bytes]) -> None:
    client = await make_client(demo_tokens_per_s=20, demo_reply_words=6)
    alice = await sign_up(client, "alice@example.com")
    events, _ = await alice.stream("slow and steady")
    # Tokens 50 ms apart: the writer does not wait to gather a batch, so nearly every write is one event.
    single = sum(frames.count(b"\nid: ") + frames.startswith(b"id: ") == 1 for frames in writes)
    assert sum(e.name == "delta" for e in events) >= 10 and single >= 0.8 * len(writes)


async def _subscribers(session: aiohttp.ClientSession, base: str) -> float:
    text = await (await session.get(f"{base}/metrics")).text()
    return float(re.search(r"(?m)^gima_sse_subscribers (\S+)$", text).group(1))  # type: ignore[union-attr]


@pytest.mark.slow
async def test_an_idle_stream_whose_client_left_ends_at_the_next_heartbeat(tmp_path: Path) -> None:
    """On a production server (which never cancels a handler): the client of a quiet reply hangs up, and its
    stream is let go at the next ping, not when the reply next speaks (a minute away here)."""
    cluster = start_cluster(tmp_path, None, 1, nginx=False, heartbeat_s="0.3", demo_first_token_ms="60000")
    try:
        base = cluster.base(0)
        async with aiohttp.ClientSession() as session:
            signup = await session.post(f"{base}/api/auth/signup",
                                        json={"email": "idle@example.com", "password": "a good password"})
            token = (await signup.json())["accessToken"]
            remember(token)
            reader, writer = await asyncio.open_connection("127.0.0.1", cluster.ports[0])
            body = b'{"content":"a slow one"}'
            writer.write(b"POST /api/chat/stream HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                         b"Authorization: Bearer " + token.encode() + b"\r\nContent-Length: %d\r\n\r\n%b" % (len(body), body))
            assert b"event: meta" in await reader.readuntil(b"event: meta")
            assert await _subscribers(session, base) == 1.0
            writer.close()
            await writer.wait_closed()
            for _ in range(40):
                if await _subscribers(session, base) == 0.0:
                    break
                await asyncio.sleep(0.1)
            assert await _subscribers(session, base) == 0.0
    finally:
        cluster.stop()


async def test_a_reader_whose_socket_fills_gets_every_event_once_in_order(
    make_client: MakeClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A reader that stops reading while the reply runs ahead: the pushes stop once the transport is full, the
    awaited write takes over, and when the reader reads again it gets every event once, in order, to the end."""
    refused: list[int] = []
    can_write_now = BatchingEventSourceResponse.can_write_now

    def recording(self: BatchingEventSourceResponse, size: int) -> bool:
        answer = can_write_now(self, size)
        if not answer:
            refused.append(size)
        return answer

    monkeypatch.setattr(BatchingEventSourceResponse, "can_write_now", recording)
    client = await make_client(demo_reply_words=8000, sse_sndbuf_bytes=4096, subscriber_max_lag=1_000_000)
    alice = await sign_up(client, "alice@example.com")
    async with aiohttp.ClientSession(read_bufsize=1024) as session:  # a small client buffer: TCP pushes back
        resp = await session.post(client.make_url("/api/chat/stream"), json={"content": "a long one"},
                                  headers=alice.headers)
        first = await resp.content.readuntil(b"\n\n")
        await asyncio.sleep(0.5)  # not reading: the reply runs ahead and the server's transport fills
        events, _ = parse_sse(first + await resp.read())
    assert refused, "the transport never filled: the test did not reach the awaited write"
    assert [e.id for e in events] == list(range(1, len(events) + 1))
    assert events[-1].name == "done" and sum(e.name == "delta" for e in events) > 8000
    stored = (await alice.messages(events[0].data["chatId"]))[-1]
    assert stored["content"] == events[-1].data["content"]


async def test_a_stream_socket_gets_its_stall_timeout_and_send_buffer_and_gives_the_timeout_back(
    make_client: MakeClient,
) -> None:
    """TCP_USER_TIMEOUT (aiohttp-sse's stall protection) and the capped send buffer are set on the stream's socket, and
    the timeout is put back once the stream has ended, for the next request on the kept-alive connection."""
    import socket

    from gima_server import appkeys

    client = await make_client(sse_send_timeout_s=7, sse_sndbuf_bytes=16384, demo_first_token_ms=300,
                               demo_reply_words=2)
    alice = await sign_up(client, "alice@example.com")
    async with aiohttp.ClientSession() as session:  # one kept-alive connection for both requests
        resp = await session.post(client.make_url("/api/chat/stream"), json={"content": "hold on"},
                                  headers=alice.headers)
        await resp.content.readuntil(b"\n\n")
        (stream,) = list(client.app[appkeys.HEARTBEAT]._streams)
        sock = stream._req.transport.get_extra_info("socket")  # type: ignore[attr-defined]
        peer = sock.getpeername()
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT) == 7000
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF) == 2 * 16384  # Linux doubles what it is given
        events, _ = parse_sse(await resp.read())
        assert events[-1].name == "done"
        again = await session.get(client.make_url("/api/chats"), headers=alice.headers)
        assert again.status == 200
        assert sock.getpeername() == peer  # the same connection, not another one on a reused descriptor
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT) == 0


async def test_the_server_hands_every_connection_the_streams_socket_options_from_its_listener(
    settings: Settings,
) -> None:
    """Served as `gima-server` serves (serve_until_signalled): the listening socket carries the stall timeout and the
    send-buffer cap, every accepted connection inherits them, and a stream sets (and gives back) nothing of its own."""
    import dataclasses
    import signal
    import socket

    from gima_server import appkeys
    from gima_server.app import create_app
    from gima_server.server import serve_until_signalled

    from ..redis_server import free_port

    settings = dataclasses.replace(settings, host="127.0.0.1", port=free_port(), sse_send_timeout_s=7,
                                   sse_sndbuf_bytes=16384, demo_first_token_ms=300, demo_reply_words=2)
    app = create_app(settings)
    served = asyncio.create_task(serve_until_signalled(app, settings))
    base = f"http://127.0.0.1:{settings.port}"
    set_per_stream = []
    original = BatchingEventSourceResponse._set_tcp_user_timeout
    try:
        async with aiohttp.ClientSession() as session:  # one kept-alive connection for every request
            for _ in range(200):
                try:
                    async with session.get(f"{base}/health") as health:
                        if health.status == 200:
                            break
                except aiohttp.ClientConnectionError:
                    await asyncio.sleep(0.05)
            signup = await session.post(f"{base}/api/auth/signup", headers={"Origin": base},
                                        json={"email": "wire@example.com", "password": "correct horse battery"})
            assert signup.status == 201, await signup.text()
            token = (await signup.json())["accessToken"]
            remember(token)
            BatchingEventSourceResponse._set_tcp_user_timeout = (  # type: ignore[method-assign]
                lambda self, request: set_per_stream.append(self.options_at_accept) or original(self, request))
            resp = await session.post(f"{base}/api/chat/stream", json={"content": "hold on"},
                                      headers={"Authorization": f"Bearer {token}"})
            await resp.content.readuntil(b"\n\n")
            (stream,) = list(app[appkeys.HEARTBEAT]._streams)
            sock = stream._req.transport.get_extra_info("socket")  # type: ignore[attr-defined]
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT) == 7000
            assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF) == 2 * 16384  # Linux doubles what it is given
            assert set_per_stream == [True]  # the stream knew its connection had them: no system call of its own
            events, _ = parse_sse(await resp.read())
            assert events[-1].name == "done"
            again = await session.get(f"{base}/api/chats", headers={"Authorization": f"Bearer {token}"})
            assert again.status == 200
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT) == 7000  # kept for the next request
    finally:
        BatchingEventSourceResponse._set_tcp_user_timeout = original  # type: ignore[method-assign]
        signal.raise_signal(signal.SIGTERM)  # the server's own handler: it drains and returns
        await asyncio.wait_for(served, 30)
