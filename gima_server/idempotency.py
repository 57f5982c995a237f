"""Idempotency-Key records per user: fingerprint of the request, the reply it started, 24 h retention."""

from __future__ import annotations

import hashlib
import json
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Callable, Protocol


@dataclass(frozen=True, slots=True)
class IdempotencyRecord:
    fingerprint: str
    message_id: str
    created_at: float


def fingerprint(method: str, path: str, body: dict[str, Any]) -> str:
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(f"{method}\n{path}\n{canonical}".encode()).hexdigest()


class IdempotencyStore(Protocol):
    async def claim(self, user_id: str, key: str, record: IdempotencyRecord) -> IdempotencyRecord | None:
        """Store record if the key is free and return None; otherwise return the record already there."""
        ...

    async def release(self, user_id: str, key: str) -> None: ...


class MemoryIdempotencyStore:
    """In-process records; claims are atomic because nothing awaits between the check and the set."""

    def __init__(self, ttl_s: float, max_records: int = 200_000, clock: Callable[[], float] = time.monotonic) -> None:
        self._ttl_s = ttl_s
        self._max_records = max_records
        self._clock = clock
        self._records: OrderedDict[tuple[str, str], IdempotencyRecord] = OrderedDict()

    def _expire(self) -> None:
        horizon = self._clock() - self._ttl_s
        while self._records:
            oldest = next(iter(self._records.values()))
            if oldest.created_at > horizon and len(self._records) <= self._max_records:
                break
            self._records.popitem(last=False)

    async def claim(self, user_id: str, key: str, record: IdempotencyRecord) -> IdempotencyRecord | None:
        self._expire()
        existing = self._records.get((user_id, key))
        if existing is not None:
            return existing
        self._records[(user_id, key)] = IdempotencyRecord(record.fingerprint, record.message_id, self._clock())
        return None

    async def release(self, user_id: str, key: str) -> None:
        self._records.pop((user_id, key), None)
