"""Where a subscriber reads a reply from, wherever it runs: this process's log, another process's stream in
Redis, or the store. Also cancelling a reply from any process. Every id is checked against its owner first."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from ..backing import SHARED_FAILURES
from ..errors import not_found
from ..store.base import Message, Store
from .events import Event
from .follower import ForeignReply, LogFollower, backing_unavailable
from .ownership import RedisCancelBus
from .registry import Registry
from .reply import EventSource, Pushable, StoredReply

log = logging.getLogger("gima.sources")
_POLL_S = 0.05


class Unavailable:
    """What a subscriber gets when the reply lives elsewhere and Redis cannot be read: one unnumbered error."""

    finished = True

    def __init__(self, event: Event) -> None:
        self.events = [event]

    async def wait_beyond(self, cursor: int) -> None:
        return None

    def subscribe(self, subscriber: Pushable) -> None:
        return None  # finished: nothing will come

    def unsubscribe(self, subscriber: Pushable) -> None:
        return None

    def close(self) -> None:
        return None


@dataclass(frozen=True, slots=True)
class ReplySources:
    registry: Registry
    store: Store
    follower: LogFollower | None
    bus: RedisCancelBus | None
    interrupted_id: int
    retry_after_s: float = 2.0
    appear_within_s: float = 2.0  # how long a reply claimed elsewhere may take to show up in Redis or the store

    async def open(
        self, user_id: str, message_id: str, last_id: int, trace_id: str, *, expect_soon: bool = False
    ) -> tuple[EventSource, int]:
        """The source to follow and the cursor to start at; 404 for an id that is not this user's reply.

        expect_soon: the id was claimed a moment ago (idempotent retry, double send), so wait for it to appear.
        """
        loop = asyncio.get_running_loop()
        started = loop.time()
        while True:
            reply = self.registry.find(user_id, message_id)
            if reply is not None:
                return reply, last_id
            remote, backing_down = await self._open_remote(user_id, message_id, last_id)
            if remote is not None:
                return remote, 0
            message = await self.store.get_message(user_id, message_id)
            if message is not None and message.role != "assistant":
                raise not_found("message")
            if message is not None and message.status != "streaming":
                return self._stored(message, last_id, trace_id), 0
            # Streaming in the store but in no log (its producer may be resending to Redis after an outage),
            # or claimed a moment ago: give it a moment to show up.
            waiting = loop.time() - started < self.appear_within_s and (expect_soon or message is not None)
            if backing_down and (message is not None or expect_soon):
                return Unavailable(backing_unavailable(trace_id, self.retry_after_s)), 0
            if message is None and not waiting:
                raise not_found("message")
            if message is not None and (self.follower is None or not waiting):
                return self._stored(message, last_id, trace_id), 0  # nobody produces it: it reads as interrupted
            await asyncio.sleep(_POLL_S)

    async def _open_remote(self, user_id: str, message_id: str, last_id: int) -> tuple[EventSource | None, bool]:
        """(the remote reply or None, whether Redis failed)."""
        if self.follower is None:
            return None, False
        try:
            return await self.follower.open(message_id, last_id, user_id), False
        except ForeignReply:
            raise not_found("message") from None
        except SHARED_FAILURES as exc:
            log.warning("cannot read reply %s from Redis (%s)", message_id, type(exc).__name__)
            return None, True

    def _stored(self, message: Message, last_id: int, trace_id: str) -> StoredReply:
        return StoredReply(message, trace_id, last_id, self.interrupted_id)

    async def cancel(self, user_id: str, message_id: str) -> None:
        """End the reply wherever it runs (202 for the caller); 404 for an id that is not this user's reply."""
        reply = self.registry.find(user_id, message_id)
        if reply is not None:
            reply.cancel("cancelled")
            return
        if self.follower is not None and self.bus is not None:
            try:
                info = await self.follower.describe(message_id)
                if info is not None:
                    if info.user_id != user_id:
                        raise not_found("message")
                    if not info.ended:
                        await self.bus.request_message_cancel(message_id, "cancelled")
                    return
            except SHARED_FAILURES as exc:
                log.warning("cannot forward the cancel of %s (%s)", message_id, type(exc).__name__)
        message = await self.store.get_message(user_id, message_id)
        if message is None or message.role != "assistant":
            raise not_found("message")
