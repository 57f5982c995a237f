"""Every Redis key the server writes, in one place. Braces are Redis Cluster hash tags."""

from __future__ import annotations

PREFIX = "gima:"


def rate_limit(limit_name: str, key: str) -> str:
    return f"{PREFIX}rl:{{{limit_name}:{key}}}"


def idempotency(user_id: str, key: str) -> str:
    return f"{PREFIX}idem:{{{user_id}}}:{key}"


def lock(name: str) -> str:
    return f"{PREFIX}lock:{{{name}}}"


def fence(name: str) -> str:
    return f"{PREFIX}fence:{{{name}}}"
