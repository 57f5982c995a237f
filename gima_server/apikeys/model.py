"""The key's shape and its hash: pure, no I/O."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

PREFIX = "gima_sk_"  # recognisable in a config file or a leaked log, and by secret scanners
_SECRET_BYTES = 32  # 256 bits: a plain SHA-256 of it is safe to store (no password stretching needed)
_SHOWN_CHARS = len(PREFIX) + 4
MAX_NAME_CHARS = 100
MAX_KEYS_PER_USER = 50


@dataclass(frozen=True, slots=True)
class ApiKey:
    id: str
    user_id: str
    name: str
    key_hash: str
    hint: str  # the key's first characters, so its owner can tell keys apart
    created_at: float
    last_used_at: float | None = None

    def public(self) -> dict[str, object]:
        return {"id": self.id, "name": self.name, "hint": f"{self.hint}…", "createdAt": self.created_at,
                "lastUsedAt": self.last_used_at}


def new_key() -> str:
    return PREFIX + secrets.token_urlsafe(_SECRET_BYTES)


def looks_like_key(token: str) -> bool:
    return token.startswith(PREFIX)


def key_hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def key_hint(key: str) -> str:
    return key[:_SHOWN_CHARS]
