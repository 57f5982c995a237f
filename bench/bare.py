"""The bare baseline of bench/paced.py: plain aiohttp writing the demo agent's events, one
`StreamResponse.write` per event. No aiohttp-sse, no auth, no store, no replay, no batching, no metrics.

  python -m bench.bare --port 9001 --tokens-per-s 50 --words 200
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import signal
import subprocess
import sys
import uuid
from contextlib import asynccontextmanager
from typing import AsyncIterator

from aiohttp import web

from gima_server.agents.demo import _BURST, _until, compose

_TOKEN = re.compile(r"\S+\s*")
SETTINGS: web.AppKey[argparse.Namespace] = web.AppKey("settings", argparse.Namespace)
_HEADERS = {"Content-Type": "text/event-stream", "Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def _frame(event_id: int, name: str, data: dict[str, object]) -> bytes:
    return f"id: {event_id}\nevent: {name}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


async def stream(request: web.Request) -> web.StreamResponse:
    settings = request.app[SETTINGS]
    body = await request.json()
    resp = web.StreamResponse(headers=_HEADERS)
    await resp.prepare(request)
    message_id, n, parts = uuid.uuid4().hex, 0, []
    interval = 1 / settings.tokens_per_s if settings.tokens_per_s > 0 else 0.0
    loop = asyncio.get_running_loop()
    try:
        n += 1
        await resp.write(_frame(n, "meta", {"messageId": message_id, "chatId": "c", "streamId": message_id,
                                            "traceId": "t"}))
        next_at = loop.time()
        for agent, text in compose(body["content"], settings.words):
            n += 1
            await resp.write(_frame(n, "agent", {"agent": agent, "phase": "start"}))
            for i, token in enumerate(_TOKEN.findall(text)):
                # The demo agent's pace, exactly: its timer (no running-loop lookup a token), and tokens already due
                # sent together, a burst a turn at most, when the loop is behind.
                if interval:
                    next_at += interval
                    if next_at > loop.time():
                        await _until(loop, next_at)
                    elif i % _BURST == 0:
                        await asyncio.sleep(0)
                elif i % _BURST == 0:
                    await asyncio.sleep(0)
                parts.append(token)
                n += 1
                await resp.write(_frame(n, "delta", {"agent": agent, "text": token}))
            n += 1
            await resp.write(_frame(n, "agent", {"agent": agent, "phase": "end"}))
        n += 1
        await resp.write(_frame(n, "done", {"messageId": message_id, "content": "".join(parts), "finishReason": "stop"}))
    except ConnectionResetError:
        pass  # the client left
    return resp


async def hold(request: web.Request) -> web.StreamResponse:
    """An idle stream: one event, then nothing until the client leaves (no timers: the bare minimum)."""
    resp = web.StreamResponse(headers=_HEADERS)
    await resp.prepare(request)
    await resp.write(_frame(1, "meta", {}))
    await asyncio.Event().wait()  # until the server stops (the bench stops it)
    return resp


async def start(request: web.Request) -> web.StreamResponse:
    """A reply's start and nothing after it: the body read, the response opened, the first event, then held open
    (bench/start_cost.py's baseline for gima-server's reply start)."""
    body = await request.json()
    resp = web.StreamResponse(headers=_HEADERS)
    await resp.prepare(request)
    message_id = uuid.uuid4().hex
    await resp.write(_frame(1, "meta", {"messageId": message_id, "chatId": "c", "streamId": message_id,
                                        "traceId": "t", "content": len(body["content"])}))
    await asyncio.Event().wait()
    return resp


async def health(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


@asynccontextmanager
async def running_bare(tokens_per_s: float, words: int, pin: list[str] | None = None) -> AsyncIterator[tuple[int, int]]:
    """Start this server as a process on a free port (prefixed by `pin`, e.g. taskset); yield (port, pid)."""
    from .common import free_port
    from .load import _wait_healthy

    port = free_port()
    argv = [sys.executable, "-m", "bench.bare", "--port", str(port), "--tokens-per-s", str(tokens_per_s),
            "--words", str(words)]
    proc = subprocess.Popen([*(pin or []), *argv], stdout=subprocess.DEVNULL)
    try:
        await _wait_healthy(f"http://127.0.0.1:{port}", proc)
        yield port, proc.pid
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:  # its idle streams never end by themselves
            proc.kill()
            proc.wait(timeout=10)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--tokens-per-s", type=float, default=50)
    parser.add_argument("--words", type=int, default=200)
    args = parser.parse_args()
    app = web.Application()
    app[SETTINGS] = args
    app.router.add_post("/stream", stream)
    app.router.add_get("/hold", hold)
    app.router.add_post("/start", start)
    app.router.add_get("/health", health)
    try:
        import uvloop

        loop = uvloop.new_event_loop()
    except ImportError:
        loop = asyncio.new_event_loop()
    web.run_app(app, host="127.0.0.1", port=args.port, print=None, access_log=None, loop=loop, backlog=4096)


if __name__ == "__main__":
    main()
