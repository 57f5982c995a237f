"""Running the app: listen, and on SIGTERM/SIGINT drain before stopping.

Draining: /ready answers 503 at once (load balancers stop sending), new replies get 503 shutting_down,
running replies may finish for drain_s; then the rest end with error{shutting_down} (their partial text
stored), their subscribers get that event, resources close, and the process exits 0. A second signal cuts
the drain short.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time

from aiohttp import web

from . import appkeys
from .accept import BurstAcceptSite
from .config import Settings
from .streams.sse import stream_socket_options

log = logging.getLogger("gima.server")
_BACKLOG = 4096  # the kernel caps it at net.core.somaxconn


async def serve_until_signalled(app: web.Application, settings: Settings) -> None:
    # A connection that sends no complete request within the idle timeout (at its start, or between two
    # requests) is closed: aiohttp's default is an hour, which lets slow-header clients hold sockets.
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=10.0, keepalive_timeout=settings.idle_connection_timeout_s)
    # Every connection gets the streams' stall timeout and send-buffer cap from the listener (ADR 28), a stream none.
    socket_options = stream_socket_options(settings.sse_send_timeout_s, settings.sse_sndbuf_bytes)
    app[appkeys.STREAM_OPTIONS_AT_ACCEPT] = bool(socket_options)
    try:
        await runner.setup()
    except BaseException:
        await app.cleanup()  # the contexts that did start (the key ring's reload task) end, not left pending
        raise
    try:
        # A deep accept queue: a burst of new streams (a deploy's reconnect wave) must queue, not be reset;
        # and every queued connection is taken each loop turn, not one (accept.py).
        site = BurstAcceptSite(runner, settings.host, settings.port, backlog=_BACKLOG, socket_options=socket_options)
        await site.start()
        print(f"gima-server is running: open http://{settings.host}:{settings.port}/ in your browser (Ctrl+C to stop)",
              flush=True)
        stop, force = asyncio.Event(), asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, lambda: force.set() if stop.is_set() else stop.set())
        await stop.wait()
        await drain(app, settings.drain_s, force)
    finally:
        await runner.cleanup()  # on_shutdown ends what still runs with shutting_down; cleanup contexts close


async def drain(app: web.Application, drain_s: float, force: asyncio.Event) -> None:
    registry = app[appkeys.REGISTRY]
    registry.begin_drain()
    app[appkeys.METRICS].drain_started.set(time.time())  # an alert rule tells a drain that does not end
    running = registry.live_count
    log.info("draining: %s running, up to %.0f s", _replies(running), drain_s, extra={"replies": running})
    idle = asyncio.ensure_future(registry.wait_idle())
    forced = asyncio.ensure_future(force.wait())
    try:
        await asyncio.wait({idle, forced}, timeout=drain_s, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in (idle, forced):
            waiter.cancel()
        await asyncio.gather(idle, forced, return_exceptions=True)
    left = registry.live_count
    if left == 0:
        log.info("drain over: every reply finished", extra={"replies": 0})
    else:
        log.info("drain over: %s still running; %s with shutting_down", _replies(left),
                 "it ends" if left == 1 else "they end", extra={"replies": left})


def _replies(n: int) -> str:
    return f"{n} reply" if n == 1 else f"{n} replies"
