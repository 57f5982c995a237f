"""Publishing this process's replies to Redis Streams, so that any process can resume, replay or follow them.

Events are not written one by one: every reply with new events since the last write goes into one pipeline
(one round trip for all of them), sent as soon as the previous one returned, at most every publish interval.
Each running reply's owner lease is renewed by those writes and, for quiet replies, by a heartbeat.
While Redis is down nothing is lost here: the replies go on in memory, and once Redis answers again each one
is sent whole (ids already there are skipped), so readers elsewhere find no gap.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from dataclasses import dataclass
from importlib import resources
from typing import TYPE_CHECKING, Any, Callable

from .. import redis_keys
from ..backing import SCRIPT_MISSING, SHARED_FAILURES
from ..observability.metrics import Metrics
from .reply import Reply
from .snapshot import encode_sections

if TYPE_CHECKING:
    from redis.asyncio import Redis

log = logging.getLogger("gima.publisher")
PUBLISH_SCRIPT = resources.files("gima_server").joinpath("lua/log_publish.lua").read_text()
_DRAIN_FAILURES: tuple[type[BaseException], ...] = (TimeoutError, *SHARED_FAILURES)
_RUNNING_TTL_S = 3600  # a running reply's keys outlive any reply; its end sets the retention instead
# A failover may lose what the old master acknowledged but had not yet sent to its replica (milliseconds of
# writes, normally): replies that ended this recently are sent again whole when a loss shows.
_RECENTLY_ENDED_S = 10.0


@dataclass(frozen=True, slots=True)
class LogSettings:
    process_id: str
    owner_timeout_s: float  # a reader declares a producer dead this long after its last sign of life
    retention_s: float
    stream_maxlen: int
    interrupted_id: int  # the id of the event that ends a dead producer's reply: above any id a reply can use
    publish_interval_s: float = 0.005
    read_interval_s: float = 0.01
    block_s: float = 1.0
    retry_s: float = 0.5
    # Sentinel mode: a read failure is most likely a failover that names a new master within seconds; followers
    # stay connected (heartbeats go on) and read on from their ids, instead of being told to come back at once.
    outage_grace_s: float = 0.0
    cluster: bool = False  # Redis Cluster: followers poll (no XREAD across slots), see LogFollower._poll_once
    poll_interval_s: float = 0.02  # cluster mode: the pause after a poll that found nothing new

    @property
    def owner_ttl_ms(self) -> int:
        return max(1, int(self.owner_timeout_s * 600))  # 60 %: two missed checks still fit in the timeout

    @property
    def heartbeat_s(self) -> float:
        return self.owner_timeout_s / 5

    @property
    def retention_ttl_s(self) -> int:
        return max(1, math.ceil(self.retention_s))


@dataclass(slots=True)
class _Sent:
    events: int = 0
    parts: int = 0
    sections: int = 0
    whole: bool = True  # the next write sends everything (first write, or after a failure)


class LogPublisher:
    def __init__(self, redis: Redis, settings: LogSettings, metrics: Metrics,
                 busy_pause_s: Callable[[], float] = lambda: 0.0) -> None:
        self._redis = redis
        self._settings = settings
        self._metrics = metrics
        # On a busy loop, the pause between writes is as long as the one between local subscribers' wake-ups:
        # each reply's script call then carries several events, and Redis runs a fraction of the calls.
        self._busy_pause_s = busy_pause_s
        self._sha: str | None = None
        # Bounds: the replies running in this process; _dirty is emptied every write, an entry of _sent, _live and
        # _announced leaves when its reply's last event is written.
        self._dirty: dict[str, Reply] = {}
        self._sent: dict[str, _Sent] = {}
        self._live: dict[str, Reply] = {}
        self._wake = asyncio.Event()
        self._backoff = False  # Redis refused a write: wait before the next one
        self._urgent = asyncio.Event()  # a new reply waits to be announced (announce() writes it)
        self._new: dict[str, Reply] = {}  # tracked, not yet being written: emptied by each announce() write
        self._announcing: set[str] = set()  # in announce()'s write now: run() leaves them alone until it returns
        self._announced: dict[str, asyncio.Future[None]] = {}
        # Bound: replies whose last event was written in the last _RECENTLY_ENDED_S (pruned at each end).
        self._recently_ended: dict[str, tuple[Reply, float]] = {}
        self.healthy = True

    def offer(self, reply: Reply) -> None:
        """A reply appended an event (the reply's hot path: a dict write and a wake-up)."""
        self._dirty[reply.message_id] = reply
        if not self._wake.is_set():
            self._wake.set()

    def track(self, reply: Reply) -> None:
        self._live[reply.message_id] = reply
        self._new[reply.message_id] = reply
        self._urgent.set()

    async def announced(self, reply: Reply, timeout_s: float) -> None:
        """Wait until the reply is in Redis, so that any process can serve its id once the client learns it."""
        if not self.healthy or reply.message_id not in self._live or reply.message_id in self._sent:
            return
        future = self._announced.setdefault(reply.message_id, asyncio.get_running_loop().create_future())
        try:
            async with asyncio.timeout(timeout_s):
                await asyncio.shield(future)
        except TimeoutError:
            pass  # Redis is slow or away: the reply goes on here, readers elsewhere catch up

    async def run(self) -> None:
        """Until cancelled: write what is new, one pipeline at a time, at most once per pause after the last write
        returned. A reply not yet announced is left to announce(), so that its first write is not queued behind."""
        while True:
            await self._wake.wait()
            pause = max(self._settings.publish_interval_s, self._busy_pause_s())
            if pause:
                await asyncio.sleep(pause)
            self._wake.clear()
            batch, self._dirty = self._dirty, {}
            for message_id in self._new.keys() & batch.keys() | self._announcing & batch.keys():
                self._dirty[message_id] = batch.pop(message_id)  # announce() writes it first
            try:
                await self._write(batch)
            except SHARED_FAILURES as exc:
                self._failed(batch, exc)
                await asyncio.sleep(self._settings.retry_s)
                self._wake.set()
            else:
                if self._backoff:
                    self._backoff = False
                    await asyncio.sleep(self._settings.retry_s)
                if not self.healthy:
                    log.warning("reply log: Redis answers again; replies written during the outage are resent")
                    self.healthy = True

    async def announce(self) -> None:
        """Until cancelled: write each new reply's first events at once, beside run()'s write of every running
        reply (with 1,000 of them that write took 100-150 ms on a saturated loop, and every start waited for it)."""
        while True:
            await self._urgent.wait()
            self._urgent.clear()
            batch, self._new = self._new, {}
            self._announcing.update(batch)
            try:
                await self._write(batch)
            except SHARED_FAILURES as exc:
                self._failed(batch, exc)  # sent whole by run(), after its pause for a failure
            finally:
                self._announcing.difference_update(batch)
            for message_id, reply in batch.items():
                sent = self._sent.get(message_id)
                if sent is None or (not sent.whole and sent.events == len(reply.events)):
                    self._dirty.pop(message_id, None)  # all written (an ended reply is forgotten): nothing for run()
            if self._dirty:
                self._wake.set()

    def _failed(self, batch: dict[str, Reply], exc: BaseException) -> None:
        if self.healthy:
            log.warning("reply log: Redis unavailable (%s); replies go on in this process", type(exc).__name__)
            self.healthy = False
        self._metrics.log_failures.labels("publish").inc()
        for reply in batch.values():
            self._resend_whole(reply)
        self._resend_everything()

    def _resend_everything(self) -> None:
        """Redis may have lost writes it acknowledged (an outage, a failover to a replica that lagged): every
        running reply, and every one that ended moments ago, is sent whole at the next write; what Redis still
        holds is skipped there, what it lost is filled in, in order, so readers find no gap."""
        for reply in self._live.values():
            if reply.message_id in self._sent:
                self._resend_whole(reply)
        cutoff = time.monotonic() - _RECENTLY_ENDED_S
        for message_id, (reply, ended_at) in list(self._recently_ended.items()):
            del self._recently_ended[message_id]
            if ended_at >= cutoff:
                self._live[message_id] = reply
                self._resend_whole(reply)
    def _resend_whole(self, reply: Reply) -> None:
        """Send this reply from its first event at the next write (ids already in Redis are skipped there)."""
        self._sent.setdefault(reply.message_id, _Sent()).whole = True
        self._dirty.setdefault(reply.message_id, reply)

    async def _write(self, batch: dict[str, Reply]) -> None:
        if not batch:
            return
        if self._sha is None:
            self._sha = await self._redis.script_load(PUBLISH_SCRIPT)
        pipe = self._redis.pipeline(transaction=False)
        marks: list[tuple[Reply, _Sent]] = []
        for message_id, reply in batch.items():
            if self._expired(reply):  # ended longer ago than anyone may replay it (a long outage): not worth sending
                self._forget(message_id)
                continue
            sent = self._sent.setdefault(message_id, _Sent())
            args, mark = self._args(reply, sent)
            pipe.evalsha(self._sha, 4, *redis_keys.reply_keys(message_id), *args)
            marks.append((reply, mark))
            self._metrics.log_events_published.inc(mark.events - (0 if sent.whole else sent.events))
        if not marks:
            return
        results = await pipe.execute(raise_on_error=False)
        self._metrics.log_round_trips.labels("publish").inc()
        for (reply, mark), result in zip(marks, results, strict=True):
            self._settle(reply, mark, result)

    def _expired(self, reply: Reply) -> bool:
        finished_at = reply.finished_at
        return finished_at is not None and time.monotonic() - finished_at > self._settings.retention_s

    def _settle(self, reply: Reply, mark: _Sent, result: Any) -> None:
        message_id = reply.message_id
        if isinstance(result, Exception):
            if isinstance(result, SCRIPT_MISSING):
                self._sha = None  # Redis restarted: load the script again and resend this reply whole
            else:
                log.warning("reply log: writing %s failed (%s)", message_id, result)
                self._backoff = True
        if isinstance(result, Exception) or result == 0:  # 0: Redis lost writes without an error (a failover)
            self._resend_whole(reply)
            if result == 0:
                self._resend_everything()
            self._wake.set()
            return
        if result == -1:  # a reader found our lease lapsed and ended the reply as interrupted
            log.warning("reply %s was closed as interrupted elsewhere; stopping it", message_id)
            self._forget(message_id)
            reply.cancel("interrupted")
            return
        self._resolve_announced(message_id)
        if reply.events[mark.events - 1].terminal:
            self._forget(message_id)
            self._remember_ended(reply)
        else:
            mark.whole = False
            self._sent[message_id] = mark

    def _resolve_announced(self, message_id: str) -> None:
        announced = self._announced.pop(message_id, None)
        if announced is not None and not announced.done():
            announced.set_result(None)

    def _remember_ended(self, reply: Reply) -> None:
        now = time.monotonic()
        self._recently_ended[reply.message_id] = (reply, now)
        while self._recently_ended:  # oldest first (insertion order): drop those past the window
            oldest, (_, ended_at) = next(iter(self._recently_ended.items()))
            if now - ended_at <= _RECENTLY_ENDED_S:
                break
            del self._recently_ended[oldest]

    def _forget(self, message_id: str) -> None:
        self._resolve_announced(message_id)
        self._sent.pop(message_id, None)
        self._live.pop(message_id, None)

    def _args(self, reply: Reply, sent: _Sent) -> tuple[list[Any], _Sent]:
        events, parts_end = reply.events, reply.part_count
        end = len(events)
        ended = events[-1].terminal
        start = 0 if sent.whole else sent.events
        text = reply.text_parts(0 if sent.whole else sent.parts, parts_end)
        sections = reply.sections
        new_sections = sent.whole or len(sections) > sent.sections
        s = self._settings
        args: list[Any] = [
            s.process_id, s.owner_ttl_ms, s.stream_maxlen, "s" if sent.whole else "a", text,
            end - 1 if ended else end, encode_sections(sections) if new_sections else "",
            reply.user_id, reply.chat_id, reply.status if ended else "streaming",
            s.retention_ttl_s if ended else _RUNNING_TTL_S, 1 if ended else 0, 0 if sent.whole else sent.events,
            reply.trace_id,
        ]
        for event in events[start:end]:
            args += (event.id, event.name, event.frame)
        return args, _Sent(end, parts_end, len(sections), sent.whole)

    async def drain(self, timeout_s: float) -> None:
        """At shutdown: write what is still waiting, for at most timeout_s."""
        try:
            async with asyncio.timeout(timeout_s):
                while self._dirty:
                    batch, self._dirty = self._dirty, {}
                    await self._write(batch)
        except _DRAIN_FAILURES as exc:
            log.warning("reply log: %d replies not written at shutdown (%s)", len(self._dirty), type(exc).__name__)

    async def heartbeat(self) -> None:
        """Until cancelled: renew the owner lease of every running reply (quiet ones included)."""
        while True:
            await asyncio.sleep(self._settings.heartbeat_s)
            running = [r for r in self._live.values() if not r.finished]
            for gone in [m for m, r in self._live.items() if r.finished and m not in self._sent]:
                del self._live[gone]
            if not running:
                continue
            pipe = self._redis.pipeline(transaction=False)
            for reply in running:
                pipe.set(redis_keys.reply_owner(reply.message_id), self._settings.process_id, px=self._settings.owner_ttl_ms)
            try:
                await pipe.execute()
                self._metrics.log_round_trips.labels("heartbeat").inc()
            except SHARED_FAILURES as exc:
                self._metrics.log_failures.labels("heartbeat").inc()
                log.debug("owner heartbeat failed (%s)", type(exc).__name__)
