"""create_app(settings): wiring only. Each resource is opened and closed in a cleanup context of its own."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
import weakref
from pathlib import Path
from typing import Any, AsyncIterator, Callable, Coroutine, cast

from aiohttp import web
from aiohttp_session.cookie_storage import EncryptedCookieStorage

from . import appkeys, chats, model_routes, openapi, search
from .admission import AdmissionGate, LoadMonitor, default_max_active
from .agents import hook_routes, make_models
from .agents.base import Agent
from .agents.breaker import CircuitBreaker
from .agents.hook_inbox import HookInbox
from .agents.models import Models
from .agents.plain import PlainUpstream, plain_target
from .apikeys import routes as apikey_routes
from .apikeys.auth import ApiKeyAuth
from .auth import oidc
from .auth import routes as auth_routes
from .auth.connections import SessionConnections
from .auth.external import ExternalJwtSettings, ExternalTokens
from .auth.keyring import load_ring, signing_key
from .auth.sessions import COOKIE_NAME, SessionCache
from .auth.tokens import TokenIssuer
from .background import stop_tasks
from .clients import parse_networks
from .config import Settings
from .dialects import openai_routes, ui_routes
from .idempotency import MemoryIdempotencyStore, RedisIdempotencyStore
from .ids import new_id
from .limits.backends import MemoryBackend, RedisBackend
from .limits.limiter import Limiter
from .limits.policy import parse_rate_limits
from .locks import FallbackLocks, LocalLocks, RedisLocks
from .media import audio_routes, embeddings_routes
from .middleware import gima_middleware
from .migration import routes as migration_routes
from .migration.lane import LaneSettings, MigrationLane
from .observability import routes as observability_routes
from .observability.logs import install_secret_filter
from .observability.metrics import Metrics
from .observability.otel import init_otel, shutdown_otel
from .observability.sentry import init_sentry
from .observability.tracing import add_trace_header
from .plans import stripe_routes
from .plans.budget import TokenBudget
from .redis_client import connect
from .security import add_security_headers
from .semantic.service import SemanticSearch
from .store import open_store
from .store.base import Store
from .store.instrumented import InstrumentedStore
from .streams import routes as stream_routes
from .streams import ws as ws_routes
from .streams.coalesce import RedisCoalescer
from .streams.follower import LogFollower
from .streams.heartbeat import Heartbeat
from .streams.ownership import Ownership, RedisCancelBus
from .streams.publisher import LogPublisher, LogSettings
from .streams.registry import Registry, RegistryLimits
from .streams.repair import OrphanRepair
from .streams.reply import ReplyLimits
from .streams.sources import ReplySources
from .streams.wakeups import BusyMeter, Wakeups
from .webhooks.endpoints import sync_configured_endpoint
from .webhooks.model import retry_schedule
from .webhooks.sender import WebhookSender

log = logging.getLogger("gima.app")
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


def _store_context(store: Store | None) -> Callable[[web.Application], AsyncIterator[None]]:
    async def context(app: web.Application) -> AsyncIterator[None]:
        inner = store if store is not None else open_store(app[appkeys.SETTINGS])
        app[appkeys.STORE] = cast(Store, InstrumentedStore(inner, app[appkeys.METRICS]))
        await app[appkeys.STORE].open()
        yield
        await app[appkeys.STORE].close()

    return context


def _plain_upstream(settings: Settings, models: Models, purpose: str) -> PlainUpstream | None:
    """The embeddings or audio upstream, when configured (the agents file's entry, or GIMA_EMBEDDINGS_*/GIMA_AUDIO_*)."""
    s = settings
    base_url, api_key = (s.embeddings_base_url, s.embeddings_api_key) if purpose == "embeddings" else (
        s.audio_base_url, s.audio_api_key)
    target = plain_target(purpose, models.catalog, base_url, api_key, s.embeddings_model if purpose == "embeddings" else "")
    if target is None:
        return None
    breaker = CircuitBreaker(s.breaker_failures, s.breaker_cooldown_s)
    return PlainUpstream(target, s.upstream_connect_timeout_s, s.upstream_total_timeout_s, breaker)


def _agent_context(agent: Agent | None) -> Callable[[web.Application], AsyncIterator[None]]:
    async def context(app: web.Application) -> AsyncIterator[None]:
        settings = app[appkeys.SETTINGS]
        models = make_models(settings, app[appkeys.HOOKS]) if agent is None else Models.single(
            agent, f"gima-{settings.agent}")
        app[appkeys.MODELS] = models
        plain = {purpose: _plain_upstream(settings, models, purpose) for purpose in ("embeddings", "audio")}
        app[appkeys.EMBEDDINGS], app[appkeys.AUDIO] = plain["embeddings"], plain["audio"]
        yield
        await models.close()
        for upstream in plain.values():
            if upstream is not None:
                await upstream.close()

    return context


async def _redis_context(app: web.Application) -> AsyncIterator[None]:
    settings = app[appkeys.SETTINGS]
    if not settings.redis_url:
        app[appkeys.REDIS] = None
        yield
        return
    redis = connect(settings, settings.redis_timeout_s, blocking_pool=True)
    app[appkeys.REDIS] = redis
    app[appkeys.HOOKS].attach(redis)
    yield
    await redis.aclose()


async def _limits_context(app: web.Application) -> AsyncIterator[None]:
    settings, redis, metrics = app[appkeys.SETTINGS], app[appkeys.REDIS], app[appkeys.METRICS]
    max_active = settings.max_active_replies or default_max_active()
    gate = AdmissionGate(max_active, settings.max_replies_per_user, settings.admission_queue, settings.admission_wait_s, metrics)
    monitor = LoadMonitor(gate, metrics)
    app[appkeys.ADMISSION], app[appkeys.LOAD] = gate, monitor
    policy = parse_rate_limits(settings.rate_limits)
    if redis is None:
        app[appkeys.LIMITER] = Limiter(policy, MemoryBackend(), metrics, pressure=monitor.under_pressure)
        app[appkeys.IDEMPOTENCY] = MemoryIdempotencyStore(settings.idempotency_ttl_s)
    else:
        app[appkeys.LIMITER] = Limiter(
            policy, RedisBackend(redis), metrics, local=MemoryBackend(), pressure=monitor.under_pressure,
            timeout_s=settings.redis_timeout_s,
        )
        app[appkeys.IDEMPOTENCY] = RedisIdempotencyStore(redis, settings.idempotency_ttl_s)
    app[appkeys.BUDGET] = TokenBudget(redis, timeout_s=settings.redis_timeout_s)
    tasks = [asyncio.create_task(monitor.run())]
    if redis is not None:
        tasks.append(asyncio.create_task(app[appkeys.LIMITER].probe_forever(redis.ping)))
    yield
    await stop_tasks(tasks)


async def _streams_context(app: web.Application) -> AsyncIterator[None]:
    settings, store, redis = app[appkeys.SETTINGS], app[appkeys.STORE], app[appkeys.REDIS]
    limits = RegistryLimits(
        coalesce_window_s=settings.coalesce_window_ms / 1000,
        retention_s=settings.replay_retention_s,
        max_events_total=settings.replay_max_events_total,
        max_retained_bytes=int(settings.replay_retention_mb * 1024 * 1024),
        reply=ReplyLimits(settings.checkpoint_every, settings.replay_max_events_per_reply, settings.store_retry_s,
                          settings.checkpoint_min_s),
    )
    interrupted_id = settings.replay_max_events_per_reply + 1  # above any id a reply can reach
    wakeups = Wakeups(lambda: app[appkeys.LOAD].lag_s, settings.sse_coalesce_max_ms / 1000, busy_share=BusyMeter().share)
    shared = _SharedLog(app, interrupted_id, wakeups.window_s) if redis is not None else None
    bus = app[appkeys.BUS] = RedisCancelBus(redis) if redis is not None else None
    ownership = Ownership(_shared_locks(app), bus) if bus is not None else None
    registry = Registry(
        store, app[appkeys.MODELS], app[appkeys.IDEMPOTENCY], limits, ownership,
        publisher=shared.publisher if shared else None,
        coalescer=RedisCoalescer(redis, limits.coalesce_window_s) if redis is not None else None,
        announce_timeout_s=settings.redis_timeout_s,
        wakeups=wakeups,
    )
    app[appkeys.REGISTRY] = registry
    follower = shared.follower if shared else None
    app[appkeys.SOURCES] = ReplySources(registry, store, follower, bus, interrupted_id)
    repair = OrphanRepair(store, follower, registry.taken, interrupted_id, settings.reply_owner_timeout_s)
    try:
        await repair.run_once()
    except Exception as exc:  # Redis down at start-up: the periodic sweep catches up
        log.warning("orphan repair at start-up skipped (%s)", type(exc).__name__)
    heartbeat = app[appkeys.HEARTBEAT] = Heartbeat(settings.heartbeat_s)
    sweep_s = max(1.0, min(30.0, settings.replay_retention_s / 4))
    jobs = [registry.sweep_forever(sweep_s), heartbeat.run()]
    if bus is not None and shared is not None:
        dispatch = _bus_dispatch(registry, app[appkeys.CONNECTIONS], app[appkeys.API_KEYS])
        jobs += [bus.listen(dispatch), *shared.jobs(), repair.run_forever(
            settings.reply_owner_timeout_s * 4, settings.reply_owner_timeout_s * 1.2)]
        if ownership is not None:
            jobs.append(ownership.release_late_forever())
    tasks = [asyncio.create_task(job) for job in jobs]
    yield
    await registry.close()
    wakeups.close()
    if shared is not None:
        await shared.publisher.drain(settings.redis_timeout_s * 8)  # the last events reach readers elsewhere
    await stop_tasks(tasks)
    if shared is not None:
        await shared.blocking.aclose()


def _bus_dispatch(
    registry: Registry, connections: SessionConnections, api_keys: ApiKeyAuth
) -> Callable[[dict[str, str]], None]:
    def dispatch(message: dict[str, str]) -> None:
        if "endedSession" in message:
            ended = message["endedSession"]
            connections.close_session(ended)
            if ended.startswith("key:"):
                api_keys.forget(ended.removeprefix("key:"))  # a revoked key stops here too, not after the cache TTL
        else:
            registry.on_cancel_request(message)

    return dispatch


class _SharedLog:
    """The reply log on Redis Streams: this process's publisher and its follower of other processes' replies."""

    def __init__(self, app: web.Application, interrupted_id: int, busy_pause_s: Callable[[], float]) -> None:

        settings, redis, store = app[appkeys.SETTINGS], app[appkeys.REDIS], app[appkeys.STORE]
        assert redis is not None
        self.settings = LogSettings(
            process_id=new_id(),
            owner_timeout_s=settings.reply_owner_timeout_s,
            retention_s=settings.replay_retention_s,
            stream_maxlen=settings.replay_stream_maxlen,
            interrupted_id=interrupted_id,
            publish_interval_s=settings.log_publish_interval_ms / 1000,
            read_interval_s=settings.log_read_interval_ms / 1000,
            outage_grace_s=settings.redis_failover_grace_s if settings.redis_mode == "sentinel" else 0.0,
            cluster=settings.redis_mode == "cluster",
        )
        # Its own pool: a blocking read must outlast the usual socket timeout.
        self.blocking = connect(settings, self.settings.block_s + settings.redis_timeout_s + 1)

        async def interrupted(message_id: str, text: str, event_id: int) -> None:
            await store.interrupt_reply(message_id, text or None, event_id)

        self.publisher = LogPublisher(redis, self.settings, app[appkeys.METRICS], busy_pause_s)
        self.follower = LogFollower(redis, self.blocking, self.settings, app[appkeys.METRICS], interrupted)

    def jobs(self) -> list[Coroutine[Any, Any, None]]:
        return [self.publisher.run(), self.publisher.announce(), self.publisher.heartbeat(), self.follower.run()]


def _shared_locks(app: web.Application) -> FallbackLocks | LocalLocks:
    redis = app[appkeys.REDIS]
    if redis is None:
        return LocalLocks()
    return FallbackLocks(RedisLocks(redis), LocalLocks())


async def _migration_context(app: web.Application) -> AsyncIterator[None]:
    settings = app[appkeys.SETTINGS]
    lane = MigrationLane(
        app[appkeys.STORE],
        app[appkeys.ADMISSION],
        app[appkeys.REGISTRY].user_streaming,
        app[appkeys.LOAD].under_pressure,
        LaneSettings(max_concurrent=settings.max_concurrent_migrations, window=settings.migration_window),
        settings.migration_batch_limits,
        _shared_locks(app),
    )
    app[appkeys.MIGRATION] = lane
    if not settings.migration_enabled:
        yield
        return
    await lane.load()
    worker = asyncio.create_task(lane.run())
    yield
    await stop_tasks([worker])


async def _stop_replies(app: web.Application) -> None:
    """on_shutdown: end running replies so their subscribers get the last event and close before the server waits."""
    await app[appkeys.REGISTRY].close()
    sockets: weakref.WeakSet[web.WebSocketResponse] = app[appkeys.WEBSOCKETS]
    for ws in list(sockets):
        await ws.close(code=1001, message=b"server shutting down")


async def _flush_traces(app: web.Application) -> None:
    """The spans still buffered go out before the process ends (the exporter blocks: off the loop)."""
    await asyncio.to_thread(shutdown_otel)


async def health(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def ready(request: web.Request) -> web.Response:
    """200 when the store (and Redis, if configured) answer and nothing is degraded; else 503 with the checks."""
    checks: dict[str, object] = {}
    try:
        async with asyncio.timeout(2.0):
            await request.app[appkeys.STORE].ping()
        checks["store"] = "ok"
    except Exception as exc:
        checks["store"] = f"failed: {type(exc).__name__}"
    redis = request.app[appkeys.REDIS]
    if redis is not None:
        try:
            async with asyncio.timeout(request.app[appkeys.SETTINGS].redis_timeout_s * 4):
                await redis.ping()
            checks["redis"] = "ok"
        except Exception as exc:
            checks["redis"] = f"failed: {type(exc).__name__}"
        checks["rateLimits"] = "degraded (local buckets)" if request.app[appkeys.LIMITER].degraded else "ok"
    checks["load"] = request.app[appkeys.LOAD].snapshot()
    breakers = request.app[appkeys.MODELS].breakers()
    if breakers:
        checks["upstreams"] = breakers  # shown, not judged: an open breaker fails replies fast, the server is fine
    if request.app[appkeys.REGISTRY].draining:
        return web.json_response({"status": "draining", "checks": checks}, status=503, headers={"Retry-After": "5"})
    healthy = all(v == "ok" for k, v in checks.items() if k not in ("load", "upstreams"))
    if healthy:
        return web.json_response({"status": "ready", "checks": checks})
    return web.json_response({"status": "degraded", "checks": checks}, status=503, headers={"Retry-After": "5"})


async def index(request: web.Request) -> web.FileResponse:
    return web.FileResponse(STATIC_DIR / "index.html")


def _external_tokens(settings: Settings) -> ExternalTokens | None:
    if not (settings.external_jwt_secret or settings.external_jwt_jwks_url):
        return None
    return ExternalTokens(ExternalJwtSettings(
        settings.external_jwt_issuer, settings.external_jwt_audience, settings.external_jwt_secret,
        settings.external_jwt_jwks_url, settings.external_jwt_leeway_s, settings.external_jwt_max_ttl_s,
        settings.session_cache_s, settings.external_jwt_jwks_refresh_s,
    ))


def _keyring_context(reload_s: float) -> Callable[[web.Application], AsyncIterator[None]]:
    """Re-read the data dir's key ring now and then: a rotation reaches every process without a restart."""

    def refresh(app: web.Application) -> None:
        settings = app[appkeys.SETTINGS]
        try:
            keys = load_ring(settings.data_dir, settings.secret_keys[0])
        except (OSError, ValueError, KeyError) as exc:
            log.warning("key ring unreadable (%s); keeping the keys loaded before", type(exc).__name__)
            return
        app[appkeys.TOKENS].use(signing_key(keys, time.time()).secret, [k.secret for k in keys])

    async def context(app: web.Application) -> AsyncIterator[None]:
        refresh(app)

        async def reload_forever() -> None:
            while True:
                await asyncio.sleep(reload_s)
                refresh(app)

        task = asyncio.create_task(reload_forever())
        yield
        await stop_tasks([task])

    return context


async def _search_index_context(app: web.Application) -> AsyncIterator[None]:
    """Finished messages are queued for the search index; they are indexed here in batches while the server is
    not under pressure (a search indexes what is still queued first). The MongoDB store indexes by itself."""
    index_pending = getattr(app[appkeys.STORE], "index_pending", None)
    if index_pending is None:
        yield
        return

    async def index_forever() -> None:
        while True:
            await asyncio.sleep(1.0)
            if app[appkeys.LOAD].under_pressure():
                continue
            try:
                await index_pending(500)
            except Exception as exc:  # the store is away: the next round (or a search) catches up
                log.warning("search indexing failed (%s)", type(exc).__name__)

    task = asyncio.create_task(index_forever())
    yield
    await stop_tasks([task])


async def _semantic_context(app: web.Application) -> AsyncIterator[None]:
    """With an embeddings model configured, finished messages are embedded in the background for semantic search."""
    upstream, settings = app[appkeys.EMBEDDINGS], app[appkeys.SETTINGS]
    model = upstream.target.model if upstream is not None else ""
    if upstream is None or not model:
        app[appkeys.SEMANTIC] = None
        yield
        return
    limiter = app[appkeys.LIMITER]

    async def charge(user_id: str) -> None:
        await limiter.hit("embeddings", f"user:{user_id}")

    service = app[appkeys.SEMANTIC] = SemanticSearch(app[appkeys.STORE], upstream, model, settings.embeddings_batch,
                                                     charge, app[appkeys.REGISTRY].user_streaming)
    task = asyncio.create_task(service.index_forever(app[appkeys.LOAD].under_pressure))
    yield
    await stop_tasks([task])


async def _webhooks_context(app: web.Application) -> AsyncIterator[None]:
    """The configured endpoint (GIMA_WEBHOOK_URL) kept in the store, and this process's delivery loop."""
    settings, store = app[appkeys.SETTINGS], app[appkeys.STORE]
    try:
        await sync_configured_endpoint(store, settings)
    except Exception as exc:  # the store is away at start: deliveries wait in it all the same
        log.warning("the configured webhook endpoint could not be saved (%s)", type(exc).__name__)
    sender = WebhookSender(store, retry_schedule(settings.webhook_retry_schedule), settings.webhook_timeout_s,
                           settings.webhook_poll_s, app[appkeys.METRICS], settings.webhook_retention_days * 86400)
    task = asyncio.create_task(sender.run_forever())
    yield
    await stop_tasks([task])


async def _guest_expiry_context(app: web.Application) -> AsyncIterator[None]:
    """Guests' data is deleted GIMA_GUEST_TTL_S after the guest was made (swept every quarter of that)."""
    settings, store = app[appkeys.SETTINGS], app[appkeys.STORE]

    async def sweep_forever() -> None:
        while True:
            try:
                gone = await store.delete_guests(time.time() - settings.guest_ttl_s)
                if gone:
                    log.info("expired guests deleted", extra={"guests": gone})
            except Exception as exc:  # the store is away: the next sweep catches up
                log.warning("guest expiry sweep failed (%s)", type(exc).__name__)
            await asyncio.sleep(min(settings.guest_ttl_s / 4, 3600))

    task = asyncio.create_task(sweep_forever())
    yield
    await stop_tasks([task])


def create_app(settings: Settings, *, store: Store | None = None, agent: Agent | None = None) -> web.Application:
    uses_key_ring = not settings.secret_keys  # GIMA_SECRET_KEY unset: keys live in the data dir
    install_secret_filter()
    init_sentry()
    traced = init_otel()
    settings = settings.with_secret()
    app = web.Application(
        client_max_size=settings.max_body_bytes,
        middlewares=[gima_middleware(_cookie_storage(settings), traced)],
    )
    app[appkeys.SETTINGS] = settings
    app[appkeys.PLANS] = settings.plans()
    app[appkeys.HOOKS] = HookInbox()
    app[appkeys.METRICS] = Metrics()
    app[appkeys.SESSIONS] = SessionCache(settings.session_cache_s)
    app[appkeys.API_KEYS] = ApiKeyAuth(settings.session_cache_s)
    app[appkeys.CONNECTIONS] = SessionConnections()
    app[appkeys.TRUSTED_PROXIES] = parse_networks(settings.trusted_proxies)
    app[appkeys.WEBSOCKETS] = weakref.WeakSet()
    app[appkeys.WEBSOCKETS_PER_USER] = {}
    app[appkeys.TOKENS] = TokenIssuer(settings.secret_keys, settings.access_token_ttl_s)
    app[appkeys.EXTERNAL_TOKENS] = _external_tokens(settings)
    if uses_key_ring:
        app.cleanup_ctx.append(_keyring_context(settings.key_ring_reload_s))
    app.cleanup_ctx.append(_store_context(store))
    app.cleanup_ctx.append(_webhooks_context)
    app.cleanup_ctx.append(_agent_context(agent))
    app.cleanup_ctx.append(_redis_context)
    app.cleanup_ctx.append(_limits_context)
    app.cleanup_ctx.append(_streams_context)
    app.cleanup_ctx.append(_migration_context)
    app.cleanup_ctx.append(_search_index_context)
    app.cleanup_ctx.append(_semantic_context)
    if settings.guest_access:
        app.cleanup_ctx.append(_guest_expiry_context)
    app.on_shutdown.append(_stop_replies)
    if traced:
        app.on_cleanup.append(_flush_traces)
    app.on_response_prepare.append(add_trace_header)
    app.on_response_prepare.append(add_security_headers)
    app.router.add_get("/health", health)
    app.router.add_get("/ready", ready)
    auth_routes.add_routes(app)
    oidc.add_routes(app)
    chats.add_routes(app)
    apikey_routes.add_routes(app)
    openai_routes.add_routes(app)
    model_routes.add_routes(app)
    embeddings_routes.add_routes(app)
    audio_routes.add_routes(app)
    ui_routes.add_routes(app)
    search.add_routes(app)
    openapi.add_routes(app)
    stream_routes.add_routes(app)
    ws_routes.add_routes(app)
    observability_routes.add_routes(app)
    migration_routes.add_routes(app)
    stripe_routes.add_routes(app)
    hook_routes.add_routes(app)
    app.router.add_get("/", index)
    app.router.add_static("/static/", STATIC_DIR, append_version=False)
    return app
