"""Who may produce a session's reply, across processes: a lock lease kept alive while the reply runs.

Taking it asks the current holder (possibly another process) to stop — cancel-previous across the whole
deployment — and waits, bounded, until it has stored its partial text and let go. The lease's fencing token
goes with every store write, so a holder that lost the lease cannot overwrite its successor.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from typing import TYPE_CHECKING, AsyncIterator, Callable, Protocol

from ..backing import SHARED_FAILURES
from ..locks import Lease, Locks, acquire
from ..redis_keys import CANCEL_CHANNEL

if TYPE_CHECKING:
    from redis.asyncio import Redis

log = logging.getLogger("gima.ownership")
MAX_LATE_RELEASES = 10_000  # beyond it, expiry alone lets go of what could not be released

class CancelBus(Protocol):
    async def request_cancel(self, session_id: str, requester: str) -> None:
        """Ask whichever process runs this session's reply to end it as superseded."""
        ...

class LocalCancelBus:
    """One process: the registry has already cancelled its own previous reply; nobody else to tell."""

    async def request_cancel(self, session_id: str, requester: str) -> None:
        return None

class RedisCancelBus:
    def __init__(self, redis: Redis) -> None:
        self._redis = redis

    async def request_cancel(self, session_id: str, requester: str) -> None:
        try:
            await self._redis.publish(CANCEL_CHANNEL, json.dumps({"session": session_id, "requester": requester}))
        except SHARED_FAILURES as exc:  # no one else can be reached: the wait decides
            log.warning("could not ask other processes to cancel (%s)", type(exc).__name__)

    async def announce_session_ended(self, session_id: str) -> None:
        """Tell every process to close this login session's streams and WebSockets (a logout)."""
        try:
            await self._redis.publish(CANCEL_CHANNEL, json.dumps({"endedSession": session_id}))
        except SHARED_FAILURES as exc:  # the others stop accepting its token within GIMA_SESSION_CACHE_S anyway
            log.warning("could not tell other processes that a session ended (%s)", type(exc).__name__)

    async def request_message_cancel(self, message_id: str, reason: str) -> None:
        """Ask whichever process produces this reply to end it (raises when Redis cannot be reached)."""
        await self._redis.publish(CANCEL_CHANNEL, json.dumps({"message": message_id, "reason": reason}))

    async def listen(self, on_request: Callable[[dict[str, str]], None]) -> None:
        """Run until cancelled: hand every cancel request of other processes to on_request (its JSON object)."""
        pubsub = self._redis.pubsub()
        await pubsub.subscribe(CANCEL_CHANNEL)
        try:
            while True:
                try:
                    message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                except SHARED_FAILURES as exc:
                    log.warning("cancel channel unavailable (%s); retrying", type(exc).__name__)
                    await asyncio.sleep(1.0)
                    continue
                if message is not None:
                    on_request(json.loads(message["data"]))
        finally:
            with suppress(Exception):
                await pubsub.aclose()  # type: ignore[no-untyped-call, unused-ignore]  # untyped before redis-py 8.2

class Busy(Exception):
    """The session's previous reply did not let go in time."""

@dataclass(frozen=True, slots=True)
class OwnershipSettings:
    lease_s: float = 30.0
    takeover_wait_s: float = 5.0

class Ownership:
    def __init__(self, locks: Locks, bus: CancelBus, settings: OwnershipSettings = OwnershipSettings()) -> None:
        self._locks = locks
        self._bus = bus
        self._settings = settings
        # Leases whose release failed (Redis slow or away for a moment, or this loop too busy to read its answer):
        # each is released again until it would have expired anyway, so the session's next reply does not wait
        # out the whole lease (stream_busy for up to lease_s after a blip). Keyed by token: never someone else's.
        self._late: dict[str, tuple[Lease, float]] = {}

    async def take_session(self, session_id: str, message_id: str) -> Lease:
        name = f"session:{session_id}"
        lease = await self._locks.try_acquire(name, self._settings.lease_s)
        if lease is None:
            await self._bus.request_cancel(session_id, message_id)
            lease = await acquire(self._locks, name, self._settings.lease_s, self._settings.takeover_wait_s)
        if lease is None:
            raise Busy(session_id)
        return lease

    @property
    def renew_every_s(self) -> float:
        return self._settings.lease_s / 3

    async def keep(self, lease: Lease, on_lost: Callable[[], None], wait_first: bool = True) -> None:
        """Watchdog: extend the lease until cancelled; call on_lost if it slipped away."""
        while True:
            if wait_first:
                await asyncio.sleep(self.renew_every_s)
            wait_first = True
            try:
                extended = await self._locks.extend(lease, self._settings.lease_s)
            except Exception as exc:  # a backend outage is not a takeover: keep producing, try again
                log.warning("could not extend the lease of %s (%s)", lease.name, type(exc).__name__)
                continue
            if not extended:
                on_lost()
                return

    async def give_back(self, lease: Lease) -> None:
        try:
            await self._locks.release(lease)
        except Exception as exc:
            log.warning("could not release %s (%s); trying again shortly", lease.name, type(exc).__name__)
            if len(self._late) < MAX_LATE_RELEASES:
                self._late[lease.token] = (lease, time.monotonic() + self._settings.lease_s)

    @property
    def late_releases(self) -> int:
        return len(self._late)

    async def release_late(self) -> None:
        """Try once more to release each lease whose release failed; forget those that have expired meanwhile.
        A release names its token, so one that lands after the lease passed to someone else frees nothing."""
        now = time.monotonic()
        for token, (lease, expires_at) in list(self._late.items()):
            if expires_at <= now:
                del self._late[token]
                continue
            try:
                await self._locks.release(lease)
            except Exception:
                continue  # still out of reach: the next round, or expiry
            self._late.pop(token, None)

    async def release_late_forever(self, every_s: float = 1.0) -> None:
        while True:
            await asyncio.sleep(every_s)
            if self._late:
                await self.release_late()

    @asynccontextmanager
    async def chat_order(self, chat_id: str) -> AsyncIterator[None]:
        """Serialise writes into one chat across processes (message order)."""
        lease = await acquire(self._locks, f"chat:{chat_id}", 10.0, self._settings.takeover_wait_s)
        if lease is None:
            raise Busy(chat_id)
        try:
            yield
        finally:
            await self.give_back(lease)
