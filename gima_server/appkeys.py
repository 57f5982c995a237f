"""Every shared object on the application, under one typed key each."""

from __future__ import annotations

import weakref  # noqa: F401 - named in an annotation below
from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from .admission import AdmissionGate, LoadMonitor
    from .agents.hook_inbox import HookInbox
    from .agents.models import Models
    from .agents.plain import PlainUpstream
    from .apikeys.auth import ApiKeyAuth
    from .auth.connections import SessionConnections
    from .auth.external import ExternalTokens
    from .auth.sessions import SessionCache
    from .auth.tokens import TokenIssuer
    from .clients import Network
    from .config import Settings
    from .idempotency import IdempotencyStore
    from .limits.limiter import Limiter
    from .migration.lane import MigrationLane
    from .observability.metrics import Metrics
    from .plans.budget import TokenBudget
    from .plans.catalog import PlanCatalog
    from .semantic.service import SemanticSearch
    from .store.base import Store
    from .streams.heartbeat import Heartbeat
    from .streams.ownership import RedisCancelBus
    from .streams.registry import Registry
    from .streams.sources import ReplySources

SETTINGS: web.AppKey[Settings] = web.AppKey("settings")
STORE: web.AppKey[Store] = web.AppKey("store")
TOKENS: web.AppKey[TokenIssuer] = web.AppKey("tokens")
EXTERNAL_TOKENS: web.AppKey[ExternalTokens | None] = web.AppKey("external_tokens")
MODELS: web.AppKey[Models] = web.AppKey("models")
EMBEDDINGS: web.AppKey[PlainUpstream | None] = web.AppKey("embeddings")  # None: not configured
AUDIO: web.AppKey[PlainUpstream | None] = web.AppKey("audio")
SEMANTIC: web.AppKey[SemanticSearch | None] = web.AppKey("semantic")  # None: no embeddings model configured
IDEMPOTENCY: web.AppKey[IdempotencyStore] = web.AppKey("idempotency")
REGISTRY: web.AppKey[Registry] = web.AppKey("registry")
SOURCES: web.AppKey[ReplySources] = web.AppKey("sources")
HEARTBEAT: web.AppKey[Heartbeat] = web.AppKey("heartbeat")
METRICS: web.AppKey[Metrics] = web.AppKey("metrics")
LIMITER: web.AppKey[Limiter] = web.AppKey("limiter")
REDIS: web.AppKey[Redis | None] = web.AppKey("redis")
PLANS: web.AppKey[PlanCatalog | None] = web.AppKey("plans")
HOOKS: web.AppKey[HookInbox] = web.AppKey("hooks")
BUDGET: web.AppKey[TokenBudget] = web.AppKey("budget")
ADMISSION: web.AppKey[AdmissionGate] = web.AppKey("admission")
LOAD: web.AppKey[LoadMonitor] = web.AppKey("load")
SESSIONS: web.AppKey[SessionCache] = web.AppKey("sessions")
API_KEYS: web.AppKey[ApiKeyAuth] = web.AppKey("api_keys")
CONNECTIONS: web.AppKey[SessionConnections] = web.AppKey("connections")
BUS: web.AppKey[RedisCancelBus | None] = web.AppKey("bus")
TRUSTED_PROXIES: web.AppKey[tuple[Network, ...]] = web.AppKey("trusted_proxies")
MIGRATION: web.AppKey[MigrationLane] = web.AppKey("migration")
WEBSOCKETS: web.AppKey[weakref.WeakSet[web.WebSocketResponse]] = web.AppKey("websockets")
WEBSOCKETS_PER_USER: web.AppKey[dict[str, int]] = web.AppKey("websockets_per_user")
# Set by the server when its listening sockets carry the streams' socket options, which every accepted connection
# inherits (sse.stream_socket_options): a stream then sets none of its own. Absent: each stream sets them.
STREAM_OPTIONS_AT_ACCEPT: web.AppKey[bool] = web.AppKey("stream_options_at_accept")
