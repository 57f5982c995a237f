"""A sink for bench.paced --otel and --webhooks: takes every OTLP/HTTP trace export and every webhook delivery,
counts them, answers at once.

    python -m bench.otlp_sink PORT
"""

from __future__ import annotations

import sys

from aiohttp import web


def make_app() -> web.Application:
    counted = {"requests": 0, "bytes": 0, "webhooks": 0}

    async def traces(request: web.Request) -> web.Response:
        body = await request.read()
        counted["requests"] += 1
        counted["bytes"] += len(body)
        return web.Response(body=b"", content_type="application/x-protobuf")

    async def webhook(request: web.Request) -> web.Response:
        await request.read()
        counted["webhooks"] += 1
        return web.Response(status=204)

    async def stats(request: web.Request) -> web.Response:
        return web.json_response(counted)

    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_post("/v1/traces", traces)
    app.router.add_post("/webhooks", webhook)
    app.router.add_get("/stats", stats)
    return app


if __name__ == "__main__":
    web.run_app(make_app(), host="127.0.0.1", port=int(sys.argv[1]), print=None)
