"""The baseline: a bare aiohttp SSE server that writes the same events as gima-server's demo agent,
one event per write, with no features (no auth, storage, replay, limits or batching).

  python -m bench.baseline --port 9001 --tokens-per-s 50 --first-token-ms 0 --words 120
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import uuid

from aiohttp import web
from aiohttp_sse import EventSourceResponse

from gima_server.agents.demo import compose

_TOKEN = re.compile(r"\S+\s*")
SETTINGS: web.AppKey[argparse.Namespace] = web.AppKey("settings", argparse.Namespace)


async def stream(request: web.Request) -> web.StreamResponse:
    try:
        return await _stream(request)
    except ConnectionResetError:  # the client left early (the bench's time-to-first-event probe does)
        return web.Response(status=499)


async def _stream(request: web.Request) -> web.StreamResponse:
    settings = request.app[SETTINGS]
    body = await request.json()
    resp = EventSourceResponse(sep="\n", allow_all_methods=True)
    await resp.prepare(request)
    message_id, n = uuid.uuid4().hex, 0

    async def send(name: str, data: dict[str, object]) -> None:
        nonlocal n
        n += 1
        await resp.send(json.dumps(data, separators=(",", ":")), id=str(n), event=name)

    interval = 1 / settings.tokens_per_s if settings.tokens_per_s > 0 else 0.0
    loop = asyncio.get_running_loop()
    await send("meta", {"messageId": message_id, "chatId": "c", "streamId": message_id, "traceId": "t"})
    await asyncio.sleep(settings.first_token_ms / 1000)
    next_at, parts = loop.time(), []
    for agent, text in compose(body["content"], settings.words):
        await send("agent", {"agent": agent, "phase": "start"})
        for token in _TOKEN.findall(text):
            if interval:
                next_at += interval
                await asyncio.sleep(max(0.0, next_at - loop.time()))
            parts.append(token)
            await send("delta", {"agent": agent, "text": token})
        await send("agent", {"agent": agent, "phase": "end"})
    await send("done", {"messageId": message_id, "content": "".join(parts), "finishReason": "stop"})
    resp.stop_streaming()
    await resp.wait()
    return resp


async def hold(request: web.Request) -> web.StreamResponse:
    """An idle subscriber: heartbeats only, until the client leaves."""
    resp = EventSourceResponse(sep="\n")
    await resp.prepare(request)
    await resp.send("{}", id="1", event="meta")
    await resp.wait()
    return resp


async def health(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--tokens-per-s", type=float, default=50)
    parser.add_argument("--first-token-ms", type=float, default=0)
    parser.add_argument("--words", type=int, default=120)
    args = parser.parse_args()
    app = web.Application()
    app[SETTINGS] = args
    app.router.add_post("/stream", stream)
    app.router.add_get("/hold", hold)
    app.router.add_get("/health", health)
    try:
        import uvloop

        loop = uvloop.new_event_loop()
    except ImportError:
        loop = asyncio.new_event_loop()
    web.run_app(app, host="127.0.0.1", port=args.port, print=None, access_log=None, loop=loop)


if __name__ == "__main__":
    main()
