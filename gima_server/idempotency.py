"""Idempotency-Key records per user: fingerprint of the request and the reply it started.

A claim holds a short lease while its reply runs and is kept for the full retention (24 h) once the reply
ends, so a process that dies half-way leaves a record that expires instead of blocking the key.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Protocol

from . import redis_keys

if TYPE_CHECKING:
    from redis.asyncio import Redis


@dataclass(frozen=True, slots=True)
class IdempotencyRecord:
    fingerprint: str
    message_id: str  # the reply a stream request started ("" for a JSON request)
    status: int | None = None  # a completed JSON request's response, replayed to later callers
    body: str | None = None

    @property
    def completed(self) -> bool:
        return self.status is not None


def fingerprint(method: str, path: str, body: dict[str, Any]) -> str:
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(f"{method}\n{path}\n{canonical}".encode()).hexdigest()


def keyed_fingerprint(key: str | None, method: str, path: str, body: dict[str, Any]) -> str:
    """The request's fingerprint when it has an Idempotency-Key (only a key's record keeps one), else ""."""
    return fingerprint(method, path, body) if key is not None else ""


class IdempotencyStore(Protocol):
    async def claim(self, user_id: str, key: str, record: IdempotencyRecord) -> IdempotencyRecord | None:
        """Atomically store record if the key is free and return None; else return the record already there."""
        ...

    async def get(self, user_id: str, key: str) -> IdempotencyRecord | None: ...

    async def complete(self, user_id: str, key: str, status: int | None = None, body: str | None = None) -> None:
        """The work ended: keep the record (with the response of a JSON request) for the full retention."""
        ...

    async def release(self, user_id: str, key: str) -> None: ...


class MemoryIdempotencyStore:
    """In-process records; claims are atomic because nothing awaits between the check and the set."""

    def __init__(
        self, ttl_s: float, lease_s: float = 600.0, max_records: int = 200_000, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._ttl_s = ttl_s
        self._lease_s = lease_s
        self._max_records = max_records
        self._clock = clock
        self._records: OrderedDict[tuple[str, str], tuple[IdempotencyRecord, float]] = OrderedDict()

    def _live(self, user_id: str, key: str) -> IdempotencyRecord | None:
        entry = self._records.get((user_id, key))
        if entry is None:
            return None
        if entry[1] <= self._clock():
            del self._records[(user_id, key)]
            return None
        return entry[0]

    def _trim(self) -> None:
        now = self._clock()
        while self._records:
            expires_at = next(iter(self._records.values()))[1]
            if expires_at > now and len(self._records) <= self._max_records:
                break
            self._records.popitem(last=False)

    async def claim(self, user_id: str, key: str, record: IdempotencyRecord) -> IdempotencyRecord | None:
        self._trim()
        existing = self._live(user_id, key)
        if existing is not None:
            return existing
        self._records[(user_id, key)] = (record, self._clock() + self._lease_s)
        return None

    async def get(self, user_id: str, key: str) -> IdempotencyRecord | None:
        return self._live(user_id, key)

    async def complete(self, user_id: str, key: str, status: int | None = None, body: str | None = None) -> None:
        record = self._live(user_id, key)
        if record is not None:
            if status is not None:
                record = IdempotencyRecord(record.fingerprint, record.message_id, status, body)
            self._records[(user_id, key)] = (record, self._clock() + self._ttl_s)
            self._records.move_to_end((user_id, key))

    async def release(self, user_id: str, key: str) -> None:
        self._records.pop((user_id, key), None)


class RedisIdempotencyStore:
    """Records shared by every process: claimed with SET NX PX, so exactly one claimer wins."""

    def __init__(self, redis: Redis, ttl_s: float, lease_s: float = 600.0) -> None:
        self._redis = redis
        self._ttl_ms = int(ttl_s * 1000)
        self._lease_ms = int(lease_s * 1000)

    async def claim(self, user_id: str, key: str, record: IdempotencyRecord) -> IdempotencyRecord | None:
        name = redis_keys.idempotency(user_id, key)
        value = _encode(record)
        for _ in range(3):  # the winner's record may expire between our SET and GET; then try again
            if await self._redis.set(name, value, nx=True, px=self._lease_ms):
                return None
            existing = await self.get(user_id, key)
            if existing is not None:
                return existing
        raise RuntimeError("idempotency record kept vanishing")

    async def get(self, user_id: str, key: str) -> IdempotencyRecord | None:
        raw = await self._redis.get(redis_keys.idempotency(user_id, key))
        if raw is None:
            return None
        data = json.loads(raw)
        return IdempotencyRecord(data["fp"], data["m"], data.get("s"), data.get("b"))

    async def complete(self, user_id: str, key: str, status: int | None = None, body: str | None = None) -> None:
        name = redis_keys.idempotency(user_id, key)
        if status is None:
            await self._redis.pexpire(name, self._ttl_ms)
            return
        record = await self.get(user_id, key)
        if record is not None:
            done = IdempotencyRecord(record.fingerprint, record.message_id, status, body)
            await self._redis.set(name, _encode(done), xx=True, px=self._ttl_ms)

    async def release(self, user_id: str, key: str) -> None:
        await self._redis.delete(redis_keys.idempotency(user_id, key))


def _encode(record: IdempotencyRecord) -> str:
    return json.dumps({"fp": record.fingerprint, "m": record.message_id, "s": record.status, "b": record.body})
