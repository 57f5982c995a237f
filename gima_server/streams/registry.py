"""The stream registry: live and recently finished replies, one active reply per session, double-send coalescing."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Awaitable, Callable, Sequence

from ..agents.models import Models
from ..errors import ApiError
from ..idempotency import IdempotencyRecord, IdempotencyStore
from ..locks import LocalLocks
from ..store.base import Exchange, Store
from .coalesce import RedisCoalescer
from .ownership import LocalCancelBus, Ownership
from .publisher import LogPublisher
from .reply import Reply, ReplyLimits
from .wakeups import Wakeups

log = logging.getLogger("gima.registry")


@dataclass(frozen=True, slots=True)
class StartRequest:
    exchange: Exchange
    session_id: str
    trace_id: str
    idempotency_key: str | None
    fingerprint: str
    finalizers: Sequence[Callable[[Reply], Awaitable[None]]] = ()


@dataclass(frozen=True, slots=True)
class StartOutcome:
    message_id: str
    reply: Reply | None  # None: an idempotent replay of a reply whose log has gone (rebuild it from the store)
    replayed: bool


@dataclass(frozen=True, slots=True)
class RegistryLimits:
    coalesce_window_s: float
    retention_s: float
    max_events_total: int
    reply: ReplyLimits
    max_retained_bytes: int = 256 * 1024 * 1024  # finished replies kept for replay, as Reply.retained_bytes counts


class Registry:
    def __init__(
        self,
        store: Store,
        models: Models,
        idempotency: IdempotencyStore,
        limits: RegistryLimits,
        ownership: Ownership | None = None,
        clock: Callable[[], float] = time.monotonic,
        publisher: LogPublisher | None = None,
        coalescer: RedisCoalescer | None = None,
        announce_timeout_s: float = 0.25,
        wakeups: Wakeups | None = None,
    ) -> None:
        self._store = store
        self._models = models
        self._idempotency = idempotency
        self._limits = limits
        self._ownership = ownership or Ownership(LocalLocks(), LocalCancelBus())
        self._clock = clock
        self._publisher = publisher
        self._coalescer = coalescer
        self._announce_timeout_s = announce_timeout_s
        self._wakeups = wakeups
        # Bounds: a live reply is in _replies, _active and (until it ends) _recent; an entry leaves _active and
        # _recent when its reply ends, and _replies when its retention ends (sweep). So the maps hold at most the
        # running replies (GIMA_MAX_ACTIVE_REPLIES) plus the retained ones.
        self._replies: dict[str, Reply] = {}  # by message id: live, then retained for replay
        self._active: dict[str, Reply] = {}  # by session id: the one reply that may run
        self._recent: dict[str, tuple[str, Reply, float]] = {}  # by session: (content key, reply, started) to coalesce
        # Finished replies, oldest first. Bound: retention_s, max_events_total and max_retained_bytes; eviction:
        # the oldest first (sweep), and with it its entry in _replies (a resume then gets the stored snapshot).
        self._retained: OrderedDict[str, tuple[Reply, float, int]] = OrderedDict()  # (reply, finished at, bytes)
        self._retained_events = 0
        self._retained_bytes = 0
        # Replies whose task has not returned: running, or past their last event and doing their book-keeping (which
        # close must wait for, though they have left _active and maybe _replies). Bound: as _active, plus those few.
        self._tasks: set[asyncio.Task[None]] = set()
        self._closing = False  # draining or closed: no new replies
        self._idle = asyncio.Event()
        self._idle.set()

    def find(self, user_id: str, message_id: str) -> Reply | None:
        reply = self._replies.get(message_id)
        return reply if reply is not None and reply.user_id == user_id else None

    def user_streaming(self, user_id: str) -> bool:
        """Whether any of this user's sessions has a reply running (the migration lane waits for it)."""
        return any(r.user_id == user_id and not r.finished for r in self._active.values())

    async def chat_being_written(self, user_id: str, chat_id: str, wait_s: float = 10.0) -> bool:
        """Whether one of this user's replies here is writing the chat's first exchange; if so, after waiting (up to
        wait_s) for that write. A new chat is stored while its first reply streams, so a follow-up can name it first
        (a Stop and send again). Only the rare "chat not found" path asks: a scan of the replies is fine there."""
        pending = [r for r in self._replies.values()
                   if r.user_id == user_id and r.chat_id == chat_id and not r.exchange_settled]
        if not pending:
            return False
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(wait_s):
                for reply in pending:
                    await reply.wait_exchange_settled()
        return True

    def chat_written_here(self, chat_id: str) -> bool:
        """Whether a reply here (of any user) wrote into this chat: asked once chat_being_written said no such write
        of the caller's is still on its way, so the store's answer stands (another user's chat, or one deleted since)."""
        return any(r.chat_id == chat_id for r in self._replies.values())

    def taken(self, message_id: str) -> bool:
        return message_id in self._replies

    @property
    def live_count(self) -> int:
        return sum(1 for r in self._active.values() if not r.finished)

    async def start(self, request: StartRequest, message_exists: bool = False) -> StartOutcome:
        """Attach to an idempotent or double-sent reply, or start a new one that supersedes the session's last."""
        if self._closing:
            raise ApiError(503, "shutting_down", "the server is shutting down", retry_after_s=5)
        ex = request.exchange
        if request.idempotency_key is not None:
            claim = IdempotencyRecord(request.fingerprint, ex.reply_message_id)
            existing = await self._idempotency.claim(ex.user_id, request.idempotency_key, claim)
            if existing is not None:
                if existing.fingerprint != request.fingerprint:
                    raise ApiError(422, "idempotency_key_reused", "this Idempotency-Key was used with a different request")
                return StartOutcome(existing.message_id, self.find(ex.user_id, existing.message_id), replayed=True)
        coalesced = self._coalesce_target(request)
        if coalesced is None and self._coalescer is not None:
            first = await self._coalescer.claim(request.session_id, _content_key(ex), ex.reply_message_id)
            coalesced = self._coalesce_target(request)  # a send here may have registered while we asked
            if coalesced is None and first != ex.reply_message_id:
                # Another process (or a send here still starting) answers this one.
                await self._release_key(request)
                return StartOutcome(first, self.find(ex.user_id, first), replayed=False)
        # From here to the end nothing awaits: coalescing, cancel-previous and registration happen as one step.
        if coalesced is not None:
            await self._release_key(request)
            return StartOutcome(coalesced.message_id, coalesced, replayed=False)
        if self.taken(ex.reply_message_id) or message_exists:
            if request.idempotency_key is not None:
                await self._idempotency.release(ex.user_id, request.idempotency_key)
            raise ApiError(409, "conflict", "this messageId is already in use")
        previous = self._active.get(request.session_id)
        if previous is not None and not previous.finished:
            previous.cancel("superseded")
        reply = Reply(
            ex,
            session_id=request.session_id,
            trace_id=request.trace_id,
            store=self._store,
            agent=self._models.agent_for(ex.model),
            limits=self._limits.reply,
            ownership=self._ownership,
            on_finish=self._finished,
            finalizers=[*request.finalizers, *self._keep_idempotency_record(request)],
            on_append=self._publisher.offer if self._publisher is not None else None,
            wakeups=self._wakeups,
        )
        if self._publisher is not None:
            self._publisher.track(reply)
        self._replies[reply.message_id] = reply
        self._tasks.add(reply.task)
        reply.task.add_done_callback(self._tasks.discard)
        self._active[request.session_id] = reply
        self._idle.clear()
        self._recent[request.session_id] = (_content_key(ex), reply, self._clock())
        if self._publisher is not None:
            await self._publisher.announced(reply, self._announce_timeout_s)
        return StartOutcome(reply.message_id, reply, replayed=False)

    async def _release_key(self, request: StartRequest) -> None:
        if request.idempotency_key is not None:
            await self._idempotency.release(request.exchange.user_id, request.idempotency_key)

    async def attaches(self, request: StartRequest) -> bool:
        """Would start() attach to an existing reply (idempotent replay or double send)? Such requests are free."""
        if request.idempotency_key is not None:
            if await self._idempotency.get(request.exchange.user_id, request.idempotency_key) is not None:
                return True
        return self._coalesce_target(request) is not None

    def _keep_idempotency_record(self, request: StartRequest) -> list[Callable[[Reply], Awaitable[None]]]:
        key = request.idempotency_key
        if key is None:
            return []

        async def complete(reply: Reply) -> None:
            await self._idempotency.complete(reply.user_id, key)

        return [complete]

    def _coalesce_target(self, request: StartRequest) -> Reply | None:
        recent = self._recent.get(request.session_id)
        if recent is None:
            return None
        key, reply, started_at = recent
        if key != _content_key(request.exchange) or self._clock() - started_at > self._limits.coalesce_window_s:
            return None
        return reply

    def _finished(self, reply: Reply) -> None:
        if self._active.get(reply.session_id) is reply:
            del self._active[reply.session_id]
        if not any(not r.finished for r in self._active.values()):
            self._idle.set()
        recent = self._recent.get(reply.session_id)
        if recent is not None and recent[1] is reply:
            del self._recent[reply.session_id]
        size = reply.retained_bytes()
        self._retained[reply.message_id] = (reply, self._clock(), size)
        self._retained_events += len(reply.events)
        self._retained_bytes += size
        self.sweep()

    @property
    def retained_bytes(self) -> int:
        return self._retained_bytes

    def sweep(self) -> None:
        """Drop finished logs past their retention, and the oldest finished ones while over an event or byte bound."""
        now = self._clock()
        limits = self._limits
        while self._retained:
            reply, finished_at, size = next(iter(self._retained.values()))
            expired = now - finished_at >= limits.retention_s
            if (not expired and self._retained_events <= limits.max_events_total
                    and self._retained_bytes <= limits.max_retained_bytes):
                break
            del self._retained[reply.message_id]
            self._replies.pop(reply.message_id, None)
            self._retained_events -= len(reply.events)
            self._retained_bytes -= size

    async def sweep_forever(self, interval_s: float) -> None:
        while True:
            await asyncio.sleep(interval_s)
            self.sweep()

    def cancel_session(self, session_id: str, requester: str) -> None:
        """Another process starts a reply for this session: ours ends as superseded."""
        reply = self._active.get(session_id)
        if reply is not None and reply.message_id != requester:
            reply.cancel("superseded")

    def on_cancel_request(self, request: dict[str, str]) -> None:
        """A cancel request from another process: supersede a session's reply, or end one reply."""
        if "session" in request:
            self.cancel_session(request["session"], request.get("requester", ""))
        elif "message" in request:
            reply = self._replies.get(request["message"])
            if reply is not None:
                reply.cancel(request.get("reason", "cancelled"))

    def cancel_user(self, user_id: str) -> None:
        """Every running reply of the user ends (their account is being deleted)."""
        for reply in list(self._active.values()):
            if reply.user_id == user_id:
                reply.cancel("cancelled")

    def running_in_chat(self, user_id: str, chat_id: str) -> Reply | None:
        """The chat's reply running in this process, if any (newest first: a chat has one active reply)."""
        for reply in reversed(list(self._active.values())):
            if reply.user_id == user_id and reply.chat_id == chat_id and not reply.finished:
                return reply
        return None

    def cancel_chat(self, user_id: str, chat_id: str) -> None:
        for reply in list(self._active.values()):
            if reply.user_id == user_id and reply.chat_id == chat_id:
                reply.cancel("cancelled")

    @property
    def draining(self) -> bool:
        return self._closing

    def begin_drain(self) -> None:
        """Refuse new replies from now on; running ones go on."""
        self._closing = True

    async def wait_idle(self) -> None:
        await self._idle.wait()

    async def close(self) -> None:
        """Stop every running reply (it stores its partial text and ends with shutting_down), and wait for it and for
        the book-keeping of every reply that has ended (what it does needs the store and Redis, closed next)."""
        self._closing = True
        for reply in self._replies.values():
            if not reply.finished:
                reply.cancel("shutting_down")
        await asyncio.gather(*self._tasks, return_exceptions=True)


def _content_key(exchange: Exchange) -> str:
    new_chat = "" if exchange.new_chat_title is None else "new"
    chat = new_chat or exchange.chat_id
    return hashlib.sha256(f"{chat}\n{exchange.model}\n{exchange.content}".encode()).hexdigest()
