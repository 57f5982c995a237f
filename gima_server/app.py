"""create_app(settings): wiring only. Each resource is opened and closed in a cleanup context of its own."""

from __future__ import annotations

import asyncio
import hashlib
from contextlib import suppress
from pathlib import Path
from typing import AsyncIterator

from aiohttp import web
from aiohttp_session import session_middleware
from aiohttp_session.cookie_storage import EncryptedCookieStorage

from . import appkeys, chats
from .agents import make_agent
from .agents.base import Agent
from .auth import routes as auth_routes
from .auth.sessions import COOKIE_NAME
from .auth.tokens import TokenIssuer
from .config import Settings
from .errors import error_middleware
from .idempotency import MemoryIdempotencyStore
from .observability.tracing import add_trace_header, trace_middleware
from .security import add_security_headers, cors_preflight_middleware, origin_check_middleware
from .store import open_store
from .store.base import Store
from .streams import routes as stream_routes
from .streams.registry import Registry, RegistryLimits
from .streams.reply import ReplyLimits

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"


def _cookie_storage(settings: Settings) -> EncryptedCookieStorage:
    # Derived, not the raw secret: the cookie key and the JWT key must differ.
    key = hashlib.sha256(b"gima-cookie:" + settings.secret_keys[0].encode()).digest()
    return EncryptedCookieStorage(
        key,
        cookie_name=COOKIE_NAME,
        max_age=settings.session_ttl_s,
        secure=settings.cookie_secure,
        httponly=True,
        samesite="Lax",
    )


def _store_context(store: Store | None):  # type: ignore[no-untyped-def]
    async def context(app: web.Application) -> AsyncIterator[None]:
        app[appkeys.STORE] = store if store is not None else open_store(app[appkeys.SETTINGS])
        await app[appkeys.STORE].open()
        yield
        await app[appkeys.STORE].close()

    return context


def _agent_context(agent: Agent | None):  # type: ignore[no-untyped-def]
    async def context(app: web.Application) -> AsyncIterator[None]:
        app[appkeys.AGENT] = agent if agent is not None else make_agent(app[appkeys.SETTINGS])
        yield
        await app[appkeys.AGENT].close()

    return context


async def _streams_context(app: web.Application) -> AsyncIterator[None]:
    settings = app[appkeys.SETTINGS]
    app[appkeys.IDEMPOTENCY] = MemoryIdempotencyStore(settings.idempotency_ttl_s)
    limits = RegistryLimits(
        coalesce_window_s=settings.coalesce_window_ms / 1000,
        retention_s=settings.replay_retention_s,
        max_events_total=settings.replay_max_events_total,
        reply=ReplyLimits(settings.checkpoint_every, settings.replay_max_events_per_reply),
    )
    registry = Registry(app[appkeys.STORE], app[appkeys.AGENT], app[appkeys.IDEMPOTENCY], limits)
    app[appkeys.REGISTRY] = registry
    sweeper = asyncio.create_task(registry.sweep_forever(max(1.0, min(30.0, settings.replay_retention_s / 4))))
    yield
    sweeper.cancel()
    with suppress(asyncio.CancelledError):
        await sweeper
    await registry.close()


async def _stop_replies(app: web.Application) -> None:
    """on_shutdown: end running replies so their subscribers get the last event and close before the server waits."""
    await app[appkeys.REGISTRY].close()


async def health(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def index(request: web.Request) -> web.FileResponse:
    return web.FileResponse(STATIC_DIR / "index.html")


def create_app(settings: Settings, *, store: Store | None = None, agent: Agent | None = None) -> web.Application:
    settings = settings.with_secret()
    app = web.Application(
        client_max_size=settings.max_body_bytes,
        middlewares=[
            trace_middleware,
            error_middleware,
            cors_preflight_middleware,
            session_middleware(_cookie_storage(settings)),
            origin_check_middleware,
        ],
    )
    app[appkeys.SETTINGS] = settings
    app[appkeys.TOKENS] = TokenIssuer(settings.secret_keys, settings.access_token_ttl_s)
    app.cleanup_ctx.append(_store_context(store))
    app.cleanup_ctx.append(_agent_context(agent))
    app.cleanup_ctx.append(_streams_context)
    app.on_shutdown.append(_stop_replies)
    app.on_response_prepare.append(add_trace_header)
    app.on_response_prepare.append(add_security_headers)
    app.router.add_get("/health", health)
    auth_routes.add_routes(app)
    chats.add_routes(app)
    stream_routes.add_routes(app)
    app.router.add_get("/", index)
    app.router.add_static("/static/", STATIC_DIR, append_version=False)
    return app
