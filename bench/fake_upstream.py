"""A fake OpenAI-compatible upstream for bench/upstream.py: tokens at a steady pace, each carrying the
wall-clock time it was sent, so a client can measure per-event latency directly or through gima-server.

  python -m bench.fake_upstream --port 9002 --tokens 60 --interval-ms 20
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time

from aiohttp import web

OPTIONS: web.AppKey[argparse.Namespace] = web.AppKey("options", argparse.Namespace)


def _chunk(content: str | None = None, usage: dict[str, int] | None = None) -> bytes:
    choices = [] if content is None else [{"index": 0, "delta": {"content": content}}]
    body: dict[str, object] = {"object": "chat.completion.chunk", "choices": choices}
    if usage:
        body["usage"] = usage
    return f"data: {json.dumps(body)}\n\n".encode()


async def completions(request: web.Request) -> web.StreamResponse:
    options = request.app[OPTIONS]
    await request.read()
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await resp.prepare(request)
    loop = asyncio.get_running_loop()
    next_at = loop.time()
    try:
        for _ in range(options.tokens):
            await asyncio.sleep(max(0.0, next_at - loop.time()))
            next_at += options.interval_ms / 1000
            await resp.write(_chunk(f"<{time.time():.6f}>"))
        await resp.write(_chunk(usage={"prompt_tokens": 5, "completion_tokens": options.tokens}))
        await resp.write(b"data: [DONE]\n\n")
    except ConnectionResetError:
        pass
    return resp


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--tokens", type=int, default=60)
    parser.add_argument("--interval-ms", type=float, default=20)
    args = parser.parse_args()
    app = web.Application()
    app[OPTIONS] = args
    app.router.add_post("/v1/chat/completions", completions)
    web.run_app(app, host="127.0.0.1", port=args.port, print=None, access_log=None)


if __name__ == "__main__":
    main()
