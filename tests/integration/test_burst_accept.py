"""The listening site takes every queued connection in one loop turn (libuv would take one), and serves them."""

from __future__ import annotations

import asyncio
import socket

import aiohttp
from aiohttp import web

from gima_server.accept import BurstAcceptSite


async def _hello(request: web.Request) -> web.Response:
    return web.Response(text="hi")


async def _started_site() -> tuple[web.AppRunner, BurstAcceptSite]:
    app = web.Application()
    app.router.add_get("/", _hello)
    runner = web.AppRunner(app)
    await runner.setup()
    site = BurstAcceptSite(runner, "127.0.0.1", 0, backlog=256)
    await site.start()
    return runner, site


async def test_one_readiness_accepts_every_queued_connection() -> None:
    runner, site = await _started_site()
    listener = site._sockets[0]
    asyncio.get_running_loop().remove_reader(listener.fileno())  # drive the accepts by hand
    clients = [socket.create_connection(("127.0.0.1", site.port)) for _ in range(100)]  # queued by the kernel
    try:
        site._accept_all(listener)
        assert len(site._pending) == 100  # all handed to the loop in this one call
        await asyncio.sleep(0.05)
        assert runner.server is not None and len(runner.server.connections) == 100
    finally:
        for client in clients:
            client.close()
        await runner.cleanup()


async def test_the_site_serves_http_and_stops_listening() -> None:
    runner, site = await _started_site()
    port = site.port
    async with aiohttp.ClientSession() as session:
        replies = await asyncio.gather(*(session.get(f"http://127.0.0.1:{port}/") for _ in range(200)))
        assert [await r.text() for r in replies] == ["hi"] * 200
    await runner.cleanup()
    with socket.socket() as late:
        assert late.connect_ex(("127.0.0.1", port)) != 0  # refused: nothing listens any more
