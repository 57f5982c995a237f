"""Reading other processes' replies from Redis Streams: one blocking read per process for every reply it follows.

A subscriber here gets a RemoteReply: the events after its Last-Event-ID (or a `snapshot` when the stream no
longer holds them), then live ones as the shared read loop receives them. The loop also watches the owner lease
of every reply it follows; when one lapses twice in a row, it ends that reply for everyone as `interrupted`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from importlib import resources
from typing import TYPE_CHECKING, Any, Awaitable, Callable, cast

from .. import redis_keys
from ..backing import SHARED_FAILURES
from ..observability.metrics import Metrics
from .events import Event, encode_sse, to_json
from .publisher import LogSettings
from .reply import Pushable, Subscribers
from .snapshot import decode_sections, snapshot_event

if TYPE_CHECKING:
    from redis.asyncio import Redis

log = logging.getLogger("gima.follower")
_READ_SCRIPT = resources.files("gima_server").joinpath("lua/log_read.lua").read_text()
_CLOSE_SCRIPT = resources.files("gima_server").joinpath("lua/log_close.lua").read_text()
_READ_COUNT = 1000
OnInterrupted = Callable[[str, str, int], Awaitable[None]]  # (messageId, text so far, closing event id)


def backing_unavailable(trace_id: str, retry_after_s: float) -> Event:
    """An unnumbered last event: the client keeps its Last-Event-ID and comes back after retryAfter."""
    data = {"code": "backing_unavailable", "message": "the shared backing (Redis) is unavailable; resume shortly",
            "traceId": trace_id, "retryAfter": retry_after_s}
    return Event(0, "error", encode_sse(to_json(data), name="error", retry_ms=int(retry_after_s * 1000)))


def interrupted_data(trace_id: str) -> dict[str, Any]:
    return {"code": "interrupted", "message": "the process producing this reply stopped before it ended",
            "traceId": trace_id}


class RemoteReply:
    """One subscriber's view of a reply that another process produces (an EventSource)."""

    def __init__(self, follower: LogFollower, message_id: str, events: list[Event], last_id: int) -> None:
        self._follower = follower
        self.message_id = message_id
        self.events = events
        self.last_id = last_id
        self.finished = bool(events) and events[-1].terminal
        self._changed = asyncio.Event()
        self._subscribers = Subscribers()
        self._push_soon: asyncio.Handle | None = None

    def add(self, event: Event) -> None:
        if self.finished or event.id <= self.last_id:
            return
        self.events.append(event)
        self.last_id = event.id
        if event.terminal:
            self.finished = True
        self._changed.set()
        self._changed.clear()
        self._push_later()

    def fail(self, event: Event) -> None:
        if not self.finished:
            self.events.append(event)
            self.finished = True
            self._changed.set()
            self._push_later()

    def _push_later(self) -> None:
        # After the read that brought the event has been handed out: one write per subscriber per read.
        if self._push_soon is None:
            self._push_soon = asyncio.get_running_loop().call_soon(self._push)

    def _push(self) -> None:
        self._push_soon = None
        self._subscribers.push()

    def subscribe(self, subscriber: Pushable) -> None:
        self._subscribers.subscribe(subscriber)

    def unsubscribe(self, subscriber: Pushable) -> None:
        self._subscribers.unsubscribe(subscriber)

    async def wait_beyond(self, cursor: int) -> None:
        while len(self.events) <= cursor and not self.finished:
            await self._changed.wait()

    def close(self) -> None:
        self._follower.drop(self)


class ForeignReply(Exception):
    """The reply exists but is another user's: to its caller, indistinguishable from none."""


@dataclass(frozen=True, slots=True)
class ReplyInfo:
    user_id: str
    ended: bool


class LogFollower:
    def __init__(
        self, redis: Redis, blocking: Redis, settings: LogSettings, metrics: Metrics, on_interrupted: OnInterrupted
    ) -> None:
        self._redis = redis
        self._blocking = blocking  # its socket timeout outlasts a blocking read
        self._settings = settings
        self._metrics = metrics
        self._on_interrupted = on_interrupted
        self._read = redis.register_script(_READ_SCRIPT)
        self._close = redis.register_script(_CLOSE_SCRIPT)
        # Bounds: the replies read for a subscriber here now; an entry leaves with its last follower, a miss count
        # with its reply (or after two misses).
        self._followers: dict[str, set[RemoteReply]] = {}
        self._misses: dict[str, int] = {}
        self._has_followers = asyncio.Event()
        self._blocked = False
        self._next_check = 0.0
        self._failing_since: float | None = None

    async def describe(self, message_id: str) -> ReplyInfo | None:
        user, ended = cast(list[Any], await self._redis.hmget(redis_keys.reply_info(message_id), ["user", "ended"]))
        self._metrics.log_round_trips.labels("read").inc()
        return None if user is None else ReplyInfo(user.decode(), ended == b"1")

    async def trace_of(self, message_id: str) -> str | None:
        """The trace id of the request that started a reply (for a resume's span to link to)."""
        trace = await self._redis.hget(redis_keys.reply_info(message_id), "trace")
        return trace.decode() if isinstance(trace, bytes) else trace

    async def open(self, message_id: str, after: int, user_id: str) -> RemoteReply | None:
        """The reply as its stream has it after `after` (None when Redis knows nothing of it); ForeignReply
        when it belongs to another user (checked before anything is followed)."""
        keys = redis_keys.reply_keys(message_id)[:3]
        result = await self._read(keys=keys, args=[after, _READ_COUNT])
        self._metrics.log_round_trips.labels("read").inc()
        if result[0] == 0:
            return None
        if result[1].decode() != user_id:
            raise ForeignReply(message_id)
        events = [_event(entry) for entry in result[3]]
        last_id = events[-1].id if events else after
        if result[0] == 2:
            upto = int(result[4])
            text, sections, status = result[5].decode(), decode_sections(result[6].decode()), result[7].decode()
            events.insert(0, snapshot_event(upto, message_id, status, text, sections))
            last_id = max(upto, last_id)
        reply = RemoteReply(self, message_id, events, last_id)
        if result[2] == b"1" and not reply.finished:
            reply.finished = not events  # ended, and nothing after the reader's id: it has seen the end
        if not reply.finished:
            await self._register(reply)
        return reply

    async def _register(self, reply: RemoteReply) -> None:
        self._followers.setdefault(reply.message_id, set()).add(reply)
        self._has_followers.set()
        if self._blocked and not self._settings.cluster:  # end the read in progress so that the next one includes this reply
            try:
                await self._redis.xadd(redis_keys.wake(self._settings.process_id), {"w": "1"}, maxlen=1)
            except SHARED_FAILURES:
                pass  # the read ends by its own timeout

    def drop(self, reply: RemoteReply) -> None:
        followers = self._followers.get(reply.message_id)
        if followers is not None:
            followers.discard(reply)
            if not followers:
                del self._followers[reply.message_id]
                self._misses.pop(reply.message_id, None)

    async def run(self) -> None:
        """Until cancelled: read every followed stream in one blocking call, hand out what arrives."""
        while True:
            if not self._followers:
                self._has_followers.clear()
                await self._has_followers.wait()
            try:
                await self._read_once()
                if time.monotonic() >= self._next_check:
                    self._next_check = time.monotonic() + self._settings.heartbeat_s
                    await self._check_owners()
                self._failing_since = None
            except SHARED_FAILURES as exc:
                now = time.monotonic()
                if self._failing_since is None:
                    self._failing_since = now
                    if self._settings.outage_grace_s:
                        log.warning("reply log: cannot read from Redis (%s); followers wait up to %.0f s for a new "
                                    "master", type(exc).__name__, self._settings.outage_grace_s)
                if now - self._failing_since >= self._settings.outage_grace_s:
                    self._fail_all(exc)
                await asyncio.sleep(self._settings.retry_s)
            if self._settings.read_interval_s:
                await asyncio.sleep(self._settings.read_interval_s)  # lets events gather: fewer round trips

    async def _read_once(self) -> None:
        if self._settings.cluster:
            await self._poll_once()
            return
        streams: dict[Any, Any] = {
            redis_keys.reply_log(mid): f"0-{min(r.last_id for r in replies)}" for mid, replies in self._followers.items()
        }
        streams[redis_keys.wake(self._settings.process_id)] = "$"
        self._blocked = True
        try:
            response: Any = await self._blocking.xread(streams, count=_READ_COUNT, block=int(self._settings.block_s * 1000))
        finally:
            self._blocked = False
        self._metrics.log_round_trips.labels("read").inc()
        self._deliver(response or ())

    async def _poll_once(self) -> None:
        """Cluster mode: one XREAD may only name keys of one hash slot, and each reply's stream has a slot of its
        own, so the followed streams are read without blocking, one XREAD each in one pipeline (redis-py sends
        one batch per node), every read interval."""
        pipe = self._redis.pipeline(transaction=False)
        for message_id, replies in self._followers.items():
            pipe.xread({redis_keys.reply_log(message_id): f"0-{min(r.last_id for r in replies)}"}, count=_READ_COUNT)
        responses = await pipe.execute()
        self._metrics.log_round_trips.labels("read").inc()
        for response in responses:
            self._deliver(response or ())
        if not any(responses):
            await asyncio.sleep(self._settings.poll_interval_s)

    def _deliver(self, response: Any) -> None:
        for key, entries in response:
            message_id = _message_id(key)
            followers = self._followers.get(message_id)
            if not followers:
                continue
            self._metrics.log_events_read.inc(len(entries))
            for entry in entries:
                event = _event(entry)
                for reply in list(followers):
                    reply.add(event)
                    if reply.finished:
                        self.drop(reply)

    async def _check_owners(self) -> None:
        """Count each followed reply's missing owner lease; two misses in a row end it as interrupted."""
        message_ids = list(self._followers)
        if not message_ids:
            return
        pipe = self._redis.pipeline(transaction=False)
        for message_id in message_ids:
            pipe.exists(redis_keys.reply_owner(message_id))
        alive = await pipe.execute()
        self._metrics.log_round_trips.labels("check").inc()
        for message_id, exists in zip(message_ids, alive, strict=True):
            if exists:
                self._misses.pop(message_id, None)
                continue
            self._misses[message_id] = self._misses.get(message_id, 0) + 1
            if self._misses[message_id] >= 2:
                self._misses.pop(message_id, None)
                await self.close_if_dead(message_id, "-")

    async def close_if_dead(self, message_id: str, trace_id: str) -> bool | None:
        """End a reply whose owner lease has lapsed. True: ended now; False: alive or already ended; None: unknown."""
        s = self._settings
        data = interrupted_data(trace_id)
        result = await self._close(
            keys=redis_keys.reply_keys(message_id), args=[to_json(data), s.retention_ttl_s, s.stream_maxlen, s.interrupted_id]
        )
        self._metrics.log_round_trips.labels("check").inc()
        if result[0] != 1:
            return None if result[0] == -1 else False
        log.warning("reply %s: its producer stopped answering; ended as interrupted", message_id)
        self._metrics.interrupted_replies.inc()
        await self._on_interrupted(message_id, result[2].decode(), int(result[1]))
        return True

    def _fail_all(self, exc: BaseException) -> None:
        log.warning("reply log: cannot read from Redis (%s); followers told to come back", type(exc).__name__)
        self._metrics.log_failures.labels("read").inc()
        event = backing_unavailable("-", self._settings.retry_s * 4)
        for followers in list(self._followers.values()):
            for reply in followers:
                reply.fail(event)
        self._followers.clear()
        self._misses.clear()


def _event(entry: Any) -> Event:
    entry_id, fields = entry
    if isinstance(fields, list):  # from a script: a flat field/value list, not redis-py's parsed dict
        fields = dict(zip(fields[::2], fields[1::2], strict=True))
    return Event(int(entry_id.rsplit(b"-", 1)[1]), fields[b"n"].decode(), fields[b"f"])


def _message_id(key: bytes) -> str:
    return key.decode().split("{", 1)[1].rstrip("}")
