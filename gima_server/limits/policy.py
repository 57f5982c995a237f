"""Route classes, their quotas (GIMA_RATE_LIMITS), what each request costs, and whose bucket it draws from."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from .gcra import Limit

# class: (rate, period, burst). "tokens" is the per-user LLM token budget of streaming replies.
DEFAULTS: dict[str, tuple[float, str, float]] = {
    "chat": (30, "min", 10),
    "search": (100, "min", 20),
    "embeddings": (10, "min", 5),
    "voice": (20, "min", 5),  # transcriptions and speech, per user
    "auth": (20, "min", 10),  # sign-up and log-in attempts per client address
    "auth_account": (10, "min", 5),  # log-in attempts per account from one client address
    "auth_account_total": (100, "min", 50),  # per account from everywhere: looser, so no one address locks a user out
    "guest": (10, "h", 3),  # guest sessions made per anonymous caller (address and User-Agent)
    "guest_chat": (10, "min", 3),  # a guest's new replies: lower than a user's "chat"
    "api_key": (60, "min", 20),  # new replies started with one API key (a program), on /v1 or /api
    "migration": (60, "min", 10),
    "default": (600, "min", 120),
    "tokens": (40_000, "min", 40_000),
}
FAIL_CLOSED = frozenset({"auth", "auth_account", "auth_account_total", "guest"})
BACKGROUND = frozenset({"migration", "embeddings", "search"})
PRESSURE_COST_FACTOR = 4.0  # background work costs this much more while the server is under pressure
_PERIODS = {"s": 1.0, "sec": 1.0, "second": 1.0, "min": 60.0, "minute": 60.0, "h": 3600.0, "hour": 3600.0}
_ENTRY = re.compile(r"^([a-z_]+)=(\d+(?:\.\d+)?)/([a-z]+)(?:/(\d+(?:\.\d+)?))?$")


class PolicyError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class RatePolicy:
    enabled: bool
    limits: dict[str, Limit]

    def limit(self, name: str) -> Limit:
        return self.limits[name]


def parse_rate_limits(raw: str) -> RatePolicy:
    """`off`, or comma-separated `class=N/unit[/burst]` overriding DEFAULTS (burst defaults to N/3, at least 1)."""
    raw = raw.strip()
    if raw.lower() == "off":
        return RatePolicy(False, _limits(DEFAULTS))
    table = dict(DEFAULTS)
    for entry in filter(None, (part.strip() for part in raw.split(","))):
        if entry in ("…", "..."):
            continue
        match = _ENTRY.match(entry)
        if not match or match.group(3) not in _PERIODS or float(match.group(2)) <= 0:
            raise PolicyError(f"bad entry {entry!r}: expected class=N/unit[/burst] with unit s, min or h")
        name, rate, unit, burst = match.groups()
        if name not in DEFAULTS:
            raise PolicyError(f"unknown route class {name!r} (known: {', '.join(DEFAULTS)})")
        table[name] = (float(rate), unit, float(burst) if burst else max(1.0, float(rate) / 3))
    return RatePolicy(True, _limits(table))


def _limits(table: dict[str, tuple[float, str, float]]) -> dict[str, Limit]:
    return {name: Limit(name, rate, _PERIODS[unit], burst) for name, (rate, unit, burst) in table.items()}


@dataclass(frozen=True, slots=True)
class RouteCharge:
    limit: str
    cost: float


def route_charge(method: str, path: str) -> RouteCharge | None:
    """The bucket and cost of a request; None for free requests (health, static files, resumes, preflights)."""
    if method in ("OPTIONS", "HEAD") or not path.startswith(("/api/", "/v1/")):
        return None
    if path.startswith("/api/chat/streams/") and path.endswith("/events"):
        return None  # a resume is not new work
    if path in ("/api/chat/stream", "/api/chat", "/v1/chat/completions"):
        return None  # charged by the handler, which knows whether it is a replay (free) or a new reply
    if path == "/v1/embeddings":
        return RouteCharge("embeddings", 1)
    if path.startswith("/v1/audio/"):
        return RouteCharge("voice", 1)
    if path.startswith("/v1/"):
        return RouteCharge("default", 1)
    if path == "/api/auth/guest":
        return RouteCharge("guest", 1)
    if path.startswith("/api/auth/oidc/"):
        return RouteCharge("auth", 1)  # sign-in attempts, per address
    if path.startswith("/api/auth/"):
        return RouteCharge("auth", 1) if path in ("/api/auth/signup", "/api/auth/login") else RouteCharge("default", 1)
    if path.startswith("/api/migration/"):
        return RouteCharge("migration", 1)
    if path.startswith("/api/search"):
        return RouteCharge("search", 1)
    if path.startswith("/api/embeddings"):
        return RouteCharge("embeddings", 1)
    return RouteCharge("default", 1 if method == "GET" else 2)


def anonymous_key(remote: str | None, user_agent: str | None) -> str:
    """Callers with no account share a bucket per address and client software, never across addresses."""
    digest = hashlib.sha256(f"{remote or '-'}\n{user_agent or '-'}".encode()).hexdigest()[:24]
    return f"anon:{digest}"
