"""Writing a reply to one subscriber over SSE: every waiting event in one write, slow readers dropped."""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from dataclasses import dataclass
from typing import Callable, Mapping

from aiohttp import web
from aiohttp.abc import AbstractStreamWriter
from aiohttp.web import BaseRequest
from aiohttp_sse import EventSourceResponse

from .. import appkeys
from ..auth.connections import cancel_task
from ..observability.http_metrics import STARTED_AT
from ..observability.metrics import Metrics
from .events import SSE_SEP, retry_frame, unnumbered_error
from .heartbeat import Heartbeat
from .reply import EventSource

log = logging.getLogger("gima.sse")
_NEVER_PAUSES_BYTES = 64 * 1024  # asyncio's default write-buffer high-water mark


class BatchingEventSourceResponse(EventSourceResponse):
    """aiohttp-sse's response (headers, stall protection) plus a write of many pre-encoded frames at once, and
    pings from the process's one Heartbeat instead of a ping task per stream (aiohttp-sse's own when none)."""

    sndbuf_bytes = 0
    heartbeat: Heartbeat | None = None
    last_write = 0.0

    async def prepare(self, request: BaseRequest) -> AbstractStreamWriter | None:
        if self.heartbeat is None or self.prepared:
            return await super().prepare(request)
        # aiohttp-sse's prepare() without its ping task (the shared heartbeat pings).
        self._set_tcp_user_timeout(request)
        writer = await web.StreamResponse.prepare(self, request)
        self.enable_chunked_encoding()
        self.last_write = time.monotonic()
        self.heartbeat.add(self)
        return writer

    def stop_streaming(self) -> None:
        if self.heartbeat is None:
            super().stop_streaming()
        else:
            self.heartbeat.discard(self)

    async def wait(self) -> None:
        if self.heartbeat is None:
            await super().wait()

    def can_write_now(self, size: int) -> bool:
        transport = self._req.transport if self._req is not None else None
        return transport is not None and transport.get_write_buffer_size() + size < _NEVER_PAUSES_BYTES

    def _set_tcp_user_timeout(self, request: BaseRequest) -> None:
        super()._set_tcp_user_timeout(request)
        # A capped kernel send buffer keeps a stalled reader from hiding megabytes in the kernel,
        # so it shows up as lag (and is dropped) instead of as memory.
        sock = request.transport.get_extra_info("socket") if request.transport else None
        if self.sndbuf_bytes and sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, self.sndbuf_bytes)

    async def send_frames(self, frames: bytes) -> None:
        # aiohttp-sse's send() writes one event per call; this keeps its timeout and abort rules for a batch.
        if self.can_write_now(len(frames)):
            # Below the transport's high-water mark the write cannot wait on the peer, so it needs no timer
            # (profile: arming one per write was ~10% of a busy server); TCP_USER_TIMEOUT still cuts dead peers.
            try:
                await self.write(frames)
            except ConnectionResetError:
                self.stop_streaming()
                raise
        else:
            try:
                async with asyncio.timeout(self._send_timeout):
                    await self.write(frames)
            except ConnectionResetError:
                self.stop_streaming()
                raise
            except TimeoutError:
                self.stop_streaming()
                self._abort_transport()
                raise
        self.last_write = time.monotonic()


@dataclass(frozen=True, slots=True)
class Framing:
    """How a dialect opens a stream and tells a reader that it fell too far behind."""

    opening: bytes
    slow_consumer: Callable[[str], bytes]  # trace id -> the last frames


@dataclass(frozen=True, slots=True)
class SubscriberOptions:
    heartbeat_s: float
    retry_ms: int
    send_timeout_s: float
    max_lag: int
    sndbuf_bytes: int = 0
    heartbeat: Heartbeat | None = None


async def stream_events(
    request: web.Request,
    source: EventSource,
    cursor: int,
    options: SubscriberOptions,
    trace_id: str,
    metrics: Metrics,
    headers: Mapping[str, str] | None = None,
    session_id: str | None = None,
    dialect: Framing | None = None,
) -> tuple[web.StreamResponse, bool]:
    """Send source.events[cursor:] and follow the source until its last event; return (response, client_gone).

    With session_id, the stream ends when that login session does (a logout, here or in another process).
    A dialect other than the native one brings its own first frame and its own slow-consumer frame."""
    started_at = request.get(STARTED_AT, time.perf_counter())
    resp = BatchingEventSourceResponse(
        headers=headers,
        sep=SSE_SEP,
        allow_all_methods=True,
        send_timeout=options.send_timeout_s,
        ping_interval=options.heartbeat_s,
    )
    resp.sndbuf_bytes = options.sndbuf_bytes
    resp.heartbeat = options.heartbeat
    try:
        await resp.prepare(request)
    except BaseException:
        source.close()  # the client left before the first byte: stop following for it
        raise
    pending = retry_frame(options.retry_ms) if dialect is None else dialect.opening
    client_gone = False
    tally = _Tally(metrics, started_at)
    metrics.subscribers.inc()
    connections = request.app[appkeys.CONNECTIONS]
    if session_id is not None:
        connections.add(session_id, resp, cancel_task(request.task))
    try:
        while True:
            await source.wait_beyond(cursor)
            events = source.events
            batch = events[cursor:]
            if batch:
                cursor += len(batch)
                pending += b"".join(event.frame for event in batch)
            if pending:
                await resp.send_frames(pending)
                pending = b""
                tally.wrote(len(batch))
            if batch and batch[-1].terminal or (source.finished and cursor >= len(source.events)):
                break
            if len(source.events) - cursor > options.max_lag:
                metrics.slow_consumers.inc()
                await _drop_slow_consumer(resp, trace_id, dialect)
                break
    except (ConnectionResetError, TimeoutError):
        client_gone = True
    finally:
        if session_id is not None:
            connections.discard(session_id, resp)
        source.close()
        tally.flush()
        metrics.subscribers.dec()
        resp.stop_streaming()
        await resp.wait()
    return resp, client_gone


class _Tally:
    """Per-subscriber counts, handed to the metrics in bunches: a counter update per event adds up at 50k events/s."""

    _FLUSH_EVERY = 64

    def __init__(self, metrics: Metrics, started_at: float) -> None:
        self._metrics = metrics
        self._started_at = started_at
        self._first = True
        self._writes = 0
        self._events = 0

    def wrote(self, events: int) -> None:
        self._writes += 1
        self._events += events
        if self._first and events:
            self._first = False
            ttfe = time.perf_counter() - self._started_at
            self._metrics.time_to_first_event.observe(ttfe)
            self._metrics.recent_ttfe.add(ttfe)
        if self._events >= self._FLUSH_EVERY:
            self.flush()

    def flush(self) -> None:
        if self._writes:
            self._metrics.writes.inc(self._writes)
            self._metrics.events_sent.inc(self._events)
            self._metrics.recent_events.add(self._events)
            self._writes = self._events = 0


async def _drop_slow_consumer(resp: BatchingEventSourceResponse, trace_id: str, dialect: Framing | None) -> None:
    log.info("dropping a slow subscriber")
    if dialect is not None:
        await resp.send_frames(dialect.slow_consumer(trace_id))
        return
    message = "this client fell too far behind; resume with Last-Event-ID"
    await resp.send_frames(unnumbered_error("slow_consumer", message, trace_id))
