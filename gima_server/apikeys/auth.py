"""Who a Bearer API key belongs to, with a short cache so a program's every call does not read the store."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from .model import ApiKey, key_hash

if TYPE_CHECKING:
    from ..auth.sessions import Principal
    from ..store.base import Store

_TOUCH_EVERY_S = 60.0  # lastUsedAt is kept to the minute: not a store write per call
_MAX_ENTRIES = 10_000


class ApiKeyAuth:
    """A revoked key stops working here at once and in other processes within ttl_s (as a logout does)."""

    def __init__(self, ttl_s: float) -> None:
        self._ttl_s = ttl_s
        # key hash: (key, its principal, cached until); the principal is made once (a frozen dataclass: ~3 µs a call)
        self._entries: dict[str, tuple[ApiKey, Principal, float]] = {}
        self._touched: dict[str, float] = {}

    async def principal(self, token: str, store: Store) -> Principal | None:
        from ..auth.sessions import Principal

        digest = key_hash(token)
        now = time.time()
        entry = self._entries.get(digest)
        if entry is None or entry[2] < now:
            key = await store.api_key_by_hash(digest)
            user = await store.get_user(key.user_id) if key is not None else None
            if key is None or user is None:
                self._entries.pop(digest, None)
                return None
            entry = (key, Principal(user, f"key:{key.id}", "api_key", key.id), now + self._ttl_s)
            if self._ttl_s > 0:
                if len(self._entries) >= _MAX_ENTRIES:
                    self._entries.clear()
                self._entries[digest] = entry
        key, principal, _ = entry
        if now - self._touched.get(key.id, 0.0) >= _TOUCH_EVERY_S:
            self._touched[key.id] = now
            if len(self._touched) >= _MAX_ENTRIES:
                self._touched.clear()
            await store.touch_api_key(key.id, now)
        return principal

    def forget(self, key_id: str) -> None:
        for digest, (key, _, _) in list(self._entries.items()):
            if key.id == key_id:
                del self._entries[digest]
