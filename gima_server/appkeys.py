"""Every shared object on the application, under one typed key each."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:
    from .agents.base import Agent
    from .auth.tokens import TokenIssuer
    from .config import Settings
    from .idempotency import IdempotencyStore
    from .store.base import Store
    from .streams.registry import Registry

SETTINGS: web.AppKey[Settings] = web.AppKey("settings")
STORE: web.AppKey[Store] = web.AppKey("store")
TOKENS: web.AppKey[TokenIssuer] = web.AppKey("tokens")
AGENT: web.AppKey[Agent] = web.AppKey("agent")
IDEMPOTENCY: web.AppKey[IdempotencyStore] = web.AppKey("idempotency")
REGISTRY: web.AppKey[Registry] = web.AppKey("registry")
