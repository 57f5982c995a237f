"""Settings: one frozen object built once from GIMA_* variables and CLI flags, validated at start."""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping

if TYPE_CHECKING:
    from .migration.model import BatchLimits
    from .plans.catalog import PlanCatalog


class ConfigError(ValueError):
    """A setting has a bad value; the message names the variable."""


def _parse_bool(raw: str) -> bool:
    lowered = raw.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off", ""):
        return False
    raise ValueError("must be one of on/off, true/false, 1/0")


def _parse_csv(raw: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in raw.split(",") if part.strip())


POSTGRES_SCHEMES = ("postgresql://", "postgres://")
STORE_SCHEMES = ("sqlite:///", "mongodb://", "mongodb+srv://", *POSTGRES_SCHEMES)


@dataclass(frozen=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 8080
    data_dir: Path = Path("./data")
    store_url: str = field(default="", repr=False)  # URLs may carry credentials
    redis_url: str = field(default="", repr=False)
    redis_mode: str = "single"  # single, or sentinel: GIMA_REDIS_URL lists the sentinels
    redis_sentinel_master: str = ""
    redis_failover_grace_s: float = 8.0  # sentinel mode: followers wait this long for a new master, not told to leave
    mongo_max_pool_size: int = 50
    mongo_min_pool_size: int = 5
    mongo_wait_queue_timeout_ms: int = 30_000
    mongo_max_idle_time_ms: int = 3_600_000
    mongo_server_selection_timeout_ms: int = 5_000
    postgres_pool_size: int = 20  # connections per process; N processes use N times this many
    postgres_timeout_s: float = 10.0  # waiting for a free connection, and for one statement
    secret_keys: tuple[str, ...] = field(default=(), repr=False)  # never in a repr, so never in a log
    public_origin: str = ""
    allowed_origins: tuple[str, ...] = ()
    cookie_secure: bool = False
    agent: str = "demo"
    openai_base_url: str = "https://api.openai.com"
    openai_api_key: str = field(default="", repr=False)
    openai_model: str = "gpt-4o-mini"
    anthropic_base_url: str = "https://api.anthropic.com"
    anthropic_api_key: str = field(default="", repr=False)
    anthropic_model: str = "claude-sonnet-4-5"
    pipeline_file: str = ""
    agents_file: str = ""  # several named models with fallbacks (agents/catalog.py); replaces GIMA_AGENT's one
    embeddings_base_url: str = ""  # an OpenAI-compatible /v1/embeddings upstream (or `embeddings =` in the agents file)
    embeddings_api_key: str = field(default="", repr=False)
    embeddings_model: str = ""  # the model semantic history search embeds with (empty: no semantic search)
    audio_base_url: str = ""  # an OpenAI-compatible /v1/audio upstream (or `audio =` in the agents file)
    audio_api_key: str = field(default="", repr=False)
    embeddings_batch: int = 32  # finished messages embedded per upstream call by the background indexer
    upstream_connect_timeout_s: float = 3.0
    upstream_first_token_timeout_s: float = 8.0
    upstream_total_timeout_s: float = 120.0
    upstream_max_retries: int = 2
    breaker_failures: int = 5
    breaker_cooldown_s: float = 30.0
    demo_tokens_per_s: float = 40.0
    demo_first_token_ms: float = 150.0
    demo_reply_words: int = 120
    rate_limits: str = "chat=30/min,search=100/min,embeddings=10/min"
    max_active_replies: int = 0
    max_replies_per_user: int = 4
    admission_queue: int = 256
    admission_wait_s: float = 10.0
    reply_token_estimate: int = 500
    public_url: str = ""  # where this server is reached (a load balancer's URL): webhook agents' callbacks go there
    plans_file: str = ""  # GIMA_PLANS_FILE: plans with route quotas and a daily token budget (docs/api.md, Plans)
    stripe_webhook_secret: str = field(default="", repr=False)  # whsec_… of the Stripe endpoint; enables the route
    webhook_url: str = ""  # one endpoint from the configuration (more: `gima-server webhooks add`)
    webhook_secret: str = field(default="", repr=False)
    webhook_retry_schedule: str = "5,300,1800,7200,18000"  # seconds before each retry (with ±20 % jitter)
    webhook_timeout_s: float = 10.0
    webhook_poll_s: float = 1.0  # how often each process looks for due deliveries
    webhook_retention_days: float = 30.0  # delivered or given-up deliveries are deleted after this (pending: never)
    context_tokens: int = 0  # the history budget without an agents file (0: the agent kind's default; ADR 22)
    redis_timeout_s: float = 0.25
    redis_max_connections: int = 200
    heartbeat_s: float = 15.0
    ws_max_sockets: int = 100
    ws_max_sockets_per_user: int = 8
    idle_connection_timeout_s: float = 75.0
    body_timeout_s: float = 30.0
    ws_heartbeat_s: float = 30.0
    ws_idle_timeout_s: float = 300.0
    drain_s: float = 120.0
    sse_retry_ms: int = 3000
    sse_send_timeout_s: float = 30.0
    subscriber_max_lag: int = 2000
    sse_sndbuf_bytes: int = 256 * 1024
    sse_coalesce_max_ms: float = 50.0
    checkpoint_every: int = 32
    checkpoint_min_s: float = 0.5  # and at most one checkpoint per this many seconds
    coalesce_window_ms: float = 300.0
    cancel_on_disconnect: bool = False
    replay_retention_s: float = 300.0
    replay_max_events_per_reply: int = 20_000
    replay_max_events_total: int = 2_000_000
    replay_retention_mb: float = 256.0
    replay_stream_maxlen: int = 1000
    reply_owner_timeout_s: float = 15.0
    log_publish_interval_ms: float = 5.0
    log_read_interval_ms: float = 10.0
    idempotency_ttl_s: float = 86_400.0
    max_body_bytes: int = 256 * 1024
    store_retry_s: float = 30.0  # a reply's store writes wait out a fault (disk full, read-only) this long
    max_conversation_body_bytes: int = 2 * 1024 * 1024  # /v1/chat/completions and /api/chat carry the whole history
    max_content_bytes: int = 32 * 1024
    access_token_ttl_s: int = 3600
    key_ring_reload_s: float = 10.0
    guest_access: bool = False
    guest_ttl_s: int = 86_400
    trusted_proxies: tuple[str, ...] = ()
    key_activation_delay_s: float = 60.0
    external_jwt_secret: str = field(default="", repr=False)
    external_jwt_jwks_url: str = ""
    external_jwt_issuer: str = ""
    external_jwt_audience: str = ""
    external_jwt_leeway_s: float = 10.0
    external_jwt_max_ttl_s: int = 3600
    external_jwt_jwks_refresh_s: float = 5.0
    oidc_issuer: str = ""
    oidc_client_id: str = ""
    oidc_client_secret: str = field(default="", repr=False)
    oidc_scopes: str = "openid email profile"
    session_ttl_s: int = 30 * 86_400
    session_cache_s: float = 5.0
    migration_enabled: bool = False
    migration_window: str = ""
    max_concurrent_migrations: int = 2
    migration_max_batch_bytes: int = 4 * 1024 * 1024
    migration_batch_conversations: int = 100
    migration_conversation_messages: int = 2000
    log_level: str = "info"
    log_format: str = "json"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Read GIMA_* variables, then apply overrides (CLI flags); raise ConfigError naming the bad one."""
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        for name, parse in _ENV_PARSERS.items():
            var = "GIMA_" + name.upper()
            raw = env.get(var)
            if raw is None:
                continue
            field_name = _FIELD_FOR_VAR.get(name, name)
            try:
                values[field_name] = parse(raw)
            except (ValueError, TypeError) as exc:
                expected = _expected(field_name, parse, exc)
                raise ConfigError(f"{var} {expected}, got {raw!r}") from None
        values.update({k: v for k, v in overrides.items() if v is not None})
        settings = cls(**values)
        settings.validate()
        return settings

    def _validate_webhooks(self) -> None:
        from .webhooks.model import WebhookError, checked_secret, checked_url, retry_schedule

        for name, check, value in (("webhook_retry_schedule", retry_schedule, self.webhook_retry_schedule),
                                   ("webhook_url", checked_url, self.webhook_url),
                                   ("webhook_secret", checked_secret, self.webhook_secret)):
            if value or name == "webhook_retry_schedule":
                try:
                    check(value)
                except WebhookError as exc:
                    shown = "" if name == "webhook_secret" else f", got {value!r}"
                    raise ConfigError(f"GIMA_{name.upper()} {exc}{shown}") from None
        if bool(self.webhook_url) != bool(self.webhook_secret):
            raise ConfigError("GIMA_WEBHOOK_URL and GIMA_WEBHOOK_SECRET go together (make a secret with "
                              "`gima-server webhooks add` or any whsec_ value of 16+ random bytes)")

    def validate(self) -> None:
        for name, check, why in _CHECKS:
            if not check(getattr(self, name)):
                raise ConfigError(f"GIMA_{name.upper()} {why}, got {str(getattr(self, name))!r}")
        if self.store_url and not self.store_url.startswith(STORE_SCHEMES):
            raise ConfigError("GIMA_STORE_URL: must start with sqlite:///, postgresql:// or mongodb://")
        self._validate_webhooks()
        if self.plans() is None and self.stripe_webhook_secret:
            raise ConfigError("GIMA_STRIPE_WEBHOOK_SECRET needs GIMA_PLANS_FILE (its [stripe.prices] map prices to plans)")
        if self.redis_url and not self.redis_url.startswith(("redis://", "rediss://", "unix://")):
            raise ConfigError("GIMA_REDIS_URL: must start with redis://, rediss:// or unix://")
        if self.redis_mode not in ("single", "sentinel", "cluster"):
            raise ConfigError(f"GIMA_REDIS_MODE must be single, sentinel or cluster, got {self.redis_mode!r}")
        if self.redis_mode == "cluster" and not self.redis_url:
            raise ConfigError("GIMA_REDIS_MODE=cluster needs GIMA_REDIS_URL naming one or more cluster nodes "
                              "(redis://h1:6379,h2:6379)")
        if self.redis_mode == "sentinel" and not (self.redis_url and self.redis_sentinel_master):
            raise ConfigError("GIMA_REDIS_MODE=sentinel needs GIMA_REDIS_URL (the sentinels, redis://h1:26379,h2:26379/0)"
                              " and GIMA_REDIS_SENTINEL_MASTER (the master's name)")
        for origin in (*self.allowed_origins, *((self.public_origin,) if self.public_origin else ())):
            if not origin.startswith(("http://", "https://")) or origin.endswith("/") or origin == "*":
                raise ConfigError(f"GIMA_ALLOWED_ORIGINS / GIMA_PUBLIC_ORIGIN {origin!r}: must be scheme://host[:port]")
        from .limits.policy import PolicyError, parse_rate_limits

        try:
            parse_rate_limits(self.rate_limits)
        except PolicyError as exc:
            raise ConfigError(f"GIMA_RATE_LIMITS: {exc}") from None
        for url_name in ("openai_base_url", "anthropic_base_url", "embeddings_base_url", "audio_base_url"):
            value = getattr(self, url_name)
            if (value or url_name in ("openai_base_url", "anthropic_base_url")) and not value.startswith(("http://", "https://")):
                raise ConfigError(f"GIMA_{url_name.upper()}: must start with http:// or https://")
        from .migration.lane import valid_window

        if not valid_window(self.migration_window):
            raise ConfigError(f"GIMA_MIGRATION_WINDOW={self.migration_window!r}: expected HH:MM-HH:MM (UTC) or empty")
        if self.agent == "pipeline" and not self.pipeline_file:
            raise ConfigError("GIMA_PIPELINE_FILE: required when GIMA_AGENT=pipeline")
        self._validate_external_jwt()
        self._validate_oidc()
        self._validate_extras()
        self._validate_agents()
        from .clients import parse_networks

        try:
            parse_networks(self.trusted_proxies)
        except ValueError as exc:
            raise ConfigError(f"GIMA_TRUSTED_PROXIES: {exc}") from None
        for key in self.secret_keys:
            if len(key) < 32:
                raise ConfigError("GIMA_SECRET_KEY: each key must be at least 32 characters")

    def plans(self) -> PlanCatalog | None:
        """The plans file's catalog (None without one); ConfigError listing every problem in it."""
        if not self.plans_file:
            return None
        from .plans.catalog import PlansError, load_plans

        try:
            return load_plans(Path(self.plans_file))
        except PlansError as exc:
            raise ConfigError(str(exc)) from None

    def _validate_agents(self) -> None:
        """What `serve` would find when it builds the agent: the agents file (every problem in it), or the pipeline
        file and a key for a public upstream."""
        from .agents.upstream import api_root

        if self.agents_file:
            from .agents import load_agents_file

            load_agents_file(self)
            return

        kinds = {self.agent}
        if self.agent == "pipeline" and self.pipeline_file:
            from .agents.pipeline import load_pipeline

            kinds = {spec.upstream for spec in load_pipeline(Path(self.pipeline_file))}
        public = {"openai": ("https://api.openai.com", self.openai_base_url, self.openai_api_key),
                  "anthropic": ("https://api.anthropic.com", self.anthropic_base_url, self.anthropic_api_key)}
        for kind in sorted(kinds & set(public)):
            default_url, url, key = public[kind]
            if not key and api_root(url) == default_url:  # a local OpenAI-compatible server may need no key
                raise ConfigError(f"GIMA_{kind.upper()}_API_KEY must be set to use {url} (GIMA_AGENT or the pipeline "
                                  f"names {kind}); or point GIMA_{kind.upper()}_BASE_URL at a server that needs none")

    def _validate_extras(self) -> None:
        """A setting that needs an optional extra says which one, instead of a ModuleNotFoundError later."""
        import importlib.util

        needs = []
        if self.redis_url:
            needs.append(("GIMA_REDIS_URL", "redis", "redis"))
        if self.store_url.startswith(("mongodb://", "mongodb+srv://")):
            needs.append(("GIMA_STORE_URL", "pymongo", "mongo"))
        if self.store_url.startswith(POSTGRES_SCHEMES):
            needs.append(("GIMA_STORE_URL", "asyncpg", "postgres"))
        if self.oidc_issuer:
            needs += [("GIMA_OIDC_ISSUER", "authlib", "oidc"), ("GIMA_OIDC_ISSUER", "httpx", "oidc")]
        if self.stripe_webhook_secret:
            needs.append(("GIMA_STRIPE_WEBHOOK_SECRET", "stripe", "stripe"))
        if os.environ.get("SENTRY_DSN"):
            needs.append(("SENTRY_DSN", "sentry_sdk", "sentry"))
        if os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
            needs.append(("OTEL_EXPORTER_OTLP_ENDPOINT", "opentelemetry", "otel"))
        for variable, module, extra in needs:
            if importlib.util.find_spec(module) is None:
                raise ConfigError(f"{variable} needs the {extra} extra: pip install 'gima-server[{extra}]'")

    def _validate_oidc(self) -> None:
        named = [n for n in ("oidc_issuer", "oidc_client_id", "oidc_client_secret") if getattr(self, n)]
        if named and len(named) < 3:
            missing = ", ".join(f"GIMA_{n.upper()}" for n in ("oidc_issuer", "oidc_client_id", "oidc_client_secret")
                                if n not in named)
            raise ConfigError(f"single sign-on needs GIMA_OIDC_ISSUER, _CLIENT_ID and _CLIENT_SECRET; missing: {missing}")
        if self.oidc_issuer and not self.oidc_issuer.startswith(("https://", "http://")):
            raise ConfigError(f"GIMA_OIDC_ISSUER={self.oidc_issuer!r}: must be the provider's https:// URL")
        if self.oidc_issuer and "openid" not in self.oidc_scopes.split():
            raise ConfigError(f"GIMA_OIDC_SCOPES={self.oidc_scopes!r}: must include openid")

    def _validate_external_jwt(self) -> None:
        secret, jwks = self.external_jwt_secret, self.external_jwt_jwks_url
        if not secret and not jwks:
            if self.external_jwt_issuer or self.external_jwt_audience:
                raise ConfigError("GIMA_EXTERNAL_JWT_ISSUER/_AUDIENCE: set GIMA_EXTERNAL_JWT_SECRET or _JWKS_URL too")
            return
        if secret and jwks:
            raise ConfigError("GIMA_EXTERNAL_JWT_SECRET and GIMA_EXTERNAL_JWT_JWKS_URL: set one of them, not both")
        if secret and len(secret) < 32:
            raise ConfigError("GIMA_EXTERNAL_JWT_SECRET: must be at least 32 characters")
        if jwks and not jwks.startswith(("https://", "http://")):
            raise ConfigError(f"GIMA_EXTERNAL_JWT_JWKS_URL={jwks!r}: must start with https:// (or http:// on a trusted network)")
        for name in ("external_jwt_issuer", "external_jwt_audience"):
            if not getattr(self, name):
                raise ConfigError(f"GIMA_{name.upper()}: required when external JWTs are accepted")
        if self.external_jwt_issuer == "gima-server":
            raise ConfigError("GIMA_EXTERNAL_JWT_ISSUER: 'gima-server' is this server's own issuer; name the host site")

    @property
    def migration_batch_limits(self) -> BatchLimits:
        from .migration.model import BatchLimits

        return BatchLimits(self.migration_batch_conversations, self.migration_conversation_messages, self.max_content_bytes)

    @property
    def sqlite_path(self) -> Path:
        if self.store_url.startswith("sqlite:///"):
            return Path(self.store_url[len("sqlite:///"):])
        return self.data_dir / "gima.sqlite3"

    def with_secret(self) -> Settings:
        """Return settings with a secret key, generating one kept in data_dir when none is configured."""
        if self.secret_keys:
            return self
        path = self.data_dir / "secret_key"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if not path.exists():
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as fh:
                fh.write(secrets.token_urlsafe(48))
        return replace(self, secret_keys=(path.read_text().strip(),))


def _positive(value: float) -> bool:
    return value > 0


def _non_negative(value: float) -> bool:
    return value >= 0


_CHECKS: list[tuple[str, Callable[[Any], bool], str]] = [
    ("port", lambda p: 0 <= p <= 65535, "must be a port number 0-65535"),
    ("agent", lambda a: a in ("demo", "openai", "anthropic", "pipeline"), "must be demo, openai, anthropic or pipeline"),
    ("demo_tokens_per_s", _non_negative, "must be >= 0 (0 = as fast as possible)"),
    ("demo_first_token_ms", _non_negative, "must be >= 0"),
    ("demo_reply_words", _positive, "must be > 0"),
    ("embeddings_batch", lambda n: 1 <= n <= 2048, "must be 1-2048"),
    ("max_active_replies", _non_negative, "must be >= 0 (0 = sized to the machine)"),
    ("max_replies_per_user", _positive, "must be > 0"),
    ("admission_queue", _non_negative, "must be >= 0"),
    ("admission_wait_s", _non_negative, "must be >= 0"),
    ("reply_token_estimate", _non_negative, "must be >= 0"),
    ("context_tokens", _non_negative, "must be >= 0"),
    ("webhook_timeout_s", _positive, "must be > 0"),
    ("webhook_poll_s", _positive, "must be > 0"),
    ("webhook_retention_days", _positive, "must be > 0"),
    ("redis_timeout_s", _positive, "must be > 0"),
    ("redis_max_connections", lambda n: n >= 4, "must be >= 4"),
    ("upstream_connect_timeout_s", _positive, "must be > 0"),
    ("upstream_first_token_timeout_s", _positive, "must be > 0"),
    ("upstream_total_timeout_s", _positive, "must be > 0"),
    ("upstream_max_retries", _non_negative, "must be >= 0"),
    ("breaker_failures", _positive, "must be > 0"),
    ("breaker_cooldown_s", _positive, "must be > 0"),
    ("heartbeat_s", _positive, "must be > 0"),
    ("ws_max_sockets", _positive, "must be > 0"),
    ("ws_max_sockets_per_user", _positive, "must be > 0"),
    ("idle_connection_timeout_s", _positive, "must be > 0"),
    ("body_timeout_s", _positive, "must be > 0"),
    ("store_retry_s", _non_negative, "must be >= 0 (0 = a reply ends at the first store fault)"),
    ("max_conversation_body_bytes", lambda n: n >= 1024, "must be >= 1024"),
    ("ws_heartbeat_s", _positive, "must be > 0"),
    ("ws_idle_timeout_s", _positive, "must be > 0"),
    ("drain_s", _non_negative, "must be >= 0"),
    ("sse_retry_ms", _non_negative, "must be >= 0"),
    ("sse_send_timeout_s", _positive, "must be > 0"),
    ("subscriber_max_lag", _positive, "must be > 0"),
    ("sse_sndbuf_bytes", _non_negative, "must be >= 0 (0 = kernel default)"),
    ("sse_coalesce_max_ms", _non_negative, "must be >= 0 (0 = wake subscribers on every event)"),
    ("checkpoint_every", _positive, "must be > 0"),
    ("checkpoint_min_s", _non_negative, "must be >= 0 (0 = every GIMA_CHECKPOINT_EVERY deltas, however fast)"),
    ("coalesce_window_ms", _non_negative, "must be >= 0"),
    ("replay_retention_s", _non_negative, "must be >= 0"),
    ("replay_max_events_per_reply", lambda n: n >= 10, "must be >= 10"),
    ("replay_max_events_total", lambda n: n >= 100, "must be >= 100"),
    ("replay_retention_mb", _non_negative, "must be >= 0 (megabytes of finished replies kept for replay)"),
    ("replay_stream_maxlen", lambda n: n >= 10, "must be >= 10"),
    ("reply_owner_timeout_s", lambda n: n >= 1, "must be >= 1"),
    ("log_publish_interval_ms", _non_negative, "must be >= 0"),
    ("log_read_interval_ms", _non_negative, "must be >= 0"),
    ("idempotency_ttl_s", _positive, "must be > 0"),
    ("max_body_bytes", lambda n: n >= 1024, "must be >= 1024"),
    ("max_content_bytes", _positive, "must be > 0"),
    ("access_token_ttl_s", _positive, "must be > 0"),
    ("key_ring_reload_s", _positive, "must be > 0"),
    ("guest_ttl_s", lambda n: n >= 60, "must be >= 60 (seconds a guest's data is kept)"),
    ("key_activation_delay_s", _non_negative, "must be >= 0 (and longer than GIMA_KEY_RING_RELOAD_S with several processes)"),
    ("external_jwt_leeway_s", lambda n: 0 <= n <= 60, "must be 0..60 (seconds of clock skew allowed)"),
    ("external_jwt_max_ttl_s", _positive, "must be > 0"),
    ("external_jwt_jwks_refresh_s", _non_negative, "must be >= 0"),
    ("session_ttl_s", _positive, "must be > 0"),
    ("session_cache_s", _non_negative, "must be >= 0 (0 = off)"),
    ("max_concurrent_migrations", _positive, "must be > 0"),
    ("migration_max_batch_bytes", lambda n: n >= 1024, "must be >= 1024"),
    ("migration_batch_conversations", _positive, "must be > 0"),
    ("migration_conversation_messages", _positive, "must be > 0"),
    ("mongo_max_pool_size", _positive, "must be > 0"),
    ("postgres_pool_size", _positive, "must be > 0"),
    ("redis_failover_grace_s", _non_negative, "must be >= 0"),
    ("postgres_timeout_s", _positive, "must be > 0"),
    ("mongo_min_pool_size", _non_negative, "must be >= 0"),
    ("mongo_wait_queue_timeout_ms", _positive, "must be > 0"),
    ("mongo_max_idle_time_ms", _positive, "must be > 0"),
    ("mongo_server_selection_timeout_ms", _positive, "must be > 0"),
    ("log_level", lambda v: v in ("debug", "info", "warning", "error"), "must be debug, info, warning or error"),
    ("log_format", lambda v: v in ("json", "text"), "must be json or text"),
]

_ENV_PARSERS: dict[str, Callable[[str], Any]] = {}
for _f in fields(Settings):
    _type = str(_f.type)
    if _type == "int":
        _ENV_PARSERS[_f.name] = int
    elif _type == "float":
        _ENV_PARSERS[_f.name] = float
    elif _type == "bool":
        _ENV_PARSERS[_f.name] = _parse_bool
    elif _type == "Path":
        _ENV_PARSERS[_f.name] = Path
    elif _type.startswith("tuple"):
        _ENV_PARSERS[_f.name] = _parse_csv
    else:
        _ENV_PARSERS[_f.name] = str
# The documented variable is GIMA_SECRET_KEY (singular) even though several keys may be listed.
_ENV_PARSERS["secret_key"] = _ENV_PARSERS.pop("secret_keys")
_FIELD_FOR_VAR = {"secret_key": "secret_keys"}


_EXPECTED = {name: why for name, _, why in _CHECKS}
_NOT_SETTINGS = ("GIMA_TEST_", "GIMA_BENCH_")  # the test suite's and the bench's own variables


def _expected(field_name: str, parse: Callable[[str], Any], exc: Exception) -> str:
    """What a value that did not even parse should have been, in words."""
    kind = "a whole number" if parse is int else "a number" if parse is float else ""
    why = _EXPECTED.get(field_name, "")
    if kind and why.startswith("must be >"):
        return f"must be {kind} {why[len('must be '):]}"  # "must be a number > 0"
    if why and not why.startswith("must be >"):
        return why
    if kind:
        return f"must be {kind}"
    return str(exc) if str(exc).startswith("must") else f"is not valid ({exc})"


def unknown_variables(env: Mapping[str, str]) -> list[tuple[str, str | None]]:
    """Every GIMA_* variable that names no setting, with the closest known name (a misspelling is not ignored)."""
    import difflib

    known = ["GIMA_" + name.upper() for name in _ENV_PARSERS]
    unknown = sorted(v for v in env if v.startswith("GIMA_") and v not in known and not v.startswith(_NOT_SETTINGS))
    return [(v, next(iter(difflib.get_close_matches(v, known, n=1, cutoff=0.75)), None)) for v in unknown]
