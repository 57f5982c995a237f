"""Writing a reply to one subscriber over SSE: every waiting event in one write, pushed by the reply itself when the
write cannot block, slow readers dropped."""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from dataclasses import dataclass
from typing import Any, Callable, Coroutine, Mapping, cast

from aiohttp import web
from aiohttp.abc import AbstractStreamWriter
from aiohttp.web import BaseRequest
from aiohttp_sse import EventSourceResponse

from .. import appkeys
from ..observability.http_metrics import STARTED_AT
from ..observability.metrics import Metrics
from ..observability.tracing import current_trace_id
from .events import SSE_SEP, TERMINAL_EVENTS, retry_frame, unnumbered_error
from .heartbeat import Heartbeat
from .reply import EventSource

log = logging.getLogger("gima.sse")
_TCP_USER_TIMEOUT: int | None = getattr(socket, "TCP_USER_TIMEOUT", None)  # Linux only, as aiohttp-sse
_NEVER_PAUSES_BYTES = 64 * 1024  # asyncio's default write-buffer high-water mark


def stream_socket_options(send_timeout_s: float, sndbuf_bytes: int) -> list[tuple[int, int, int]]:
    """The socket options a stream wants (set_tcp_user_timeout below), for a listening socket to hand to every
    connection it accepts (Linux copies a listener's options to each accepted socket): none per stream then (13 µs
    a stream's start in bench.ten_thousand's burst: a socket object and three system calls, then its restore)."""
    if _TCP_USER_TIMEOUT is None:
        return []  # not Linux: each stream sets what it can, as aiohttp-sse does
    options = [(socket.IPPROTO_TCP, _TCP_USER_TIMEOUT, int(send_timeout_s * 1000))]
    if sndbuf_bytes:
        options.append((socket.SOL_SOCKET, socket.SO_SNDBUF, sndbuf_bytes))
    return options


class BatchingEventSourceResponse(EventSourceResponse):
    """aiohttp-sse's response (headers, stall protection) plus a write of many pre-encoded frames at once, a write
    that does not wait, and pings from the process's one Heartbeat instead of a ping task per stream
    (aiohttp-sse's own when none)."""

    sndbuf_bytes = 0
    options_at_accept = False  # the connection inherited the options from its listener (stream_socket_options)
    heartbeat: Heartbeat | None = None
    last_write = 0.0
    subscription: Subscription | None = None

    async def prepare(self, request: BaseRequest) -> AbstractStreamWriter | None:
        if self.prepared:
            # aiohttp prepares again after the handler; a gone client is the subscription's to notice (its end runs
            # from write_eof, which aiohttp-sse's CancelledError here would skip).
            return self._payload_writer
        if self.heartbeat is None:
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

    def write_eof(self, data: bytes = b"") -> Coroutine[Any, Any, None]:
        """What aiohttp awaits once the handler has returned: with a subscription, following it to its end first.
        Not a coroutine function itself, so that an idle stream holds one coroutine here, not two."""
        subscription = self.subscription
        if subscription is not None and not subscription.ended:
            return subscription.follow_to_end(data)
        return super().write_eof(data)

    def lost(self) -> None:
        """The heartbeat could not ping this stream: its client is gone."""
        if self.subscription is not None:
            self.subscription.client_lost()

    def can_write_now(self, size: int) -> bool:
        """A write would not wait: below the high-water mark, or failing at once because the client is gone."""
        transport = self._req.transport if self._req is not None else None
        return transport is None or transport.get_write_buffer_size() + size < _NEVER_PAUSES_BYTES

    def _set_tcp_user_timeout(self, request: BaseRequest) -> None:
        """aiohttp-sse's TCP_USER_TIMEOUT (the previous value kept for its restore), and a capped kernel send buffer:
        a stalled reader cannot hide megabytes in the kernel, so it shows up as lag (and is dropped), not as memory.
        Through one socket object: each call on uvloop's PseudoSocket makes a socket of its own (a getsockname)."""
        if self.options_at_accept:
            return
        sock = request.transport.get_extra_info("socket") if request.transport else None
        if sock is None or sock.family not in (socket.AF_INET, socket.AF_INET6):
            return
        user_timeout = _TCP_USER_TIMEOUT if self._send_timeout is not None else None
        if user_timeout is None and not self.sndbuf_bytes:
            return
        own = socket.socket(sock.family, sock.type, sock.proto, sock.fileno())
        try:
            if user_timeout is not None:
                self._saved_tcp_user_timeout = own.getsockopt(socket.IPPROTO_TCP, user_timeout)
                self._tcp_sock = sock
                own.setsockopt(socket.IPPROTO_TCP, user_timeout, int(cast(float, self._send_timeout) * 1000))
            if self.sndbuf_bytes:
                own.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, self.sndbuf_bytes)
        finally:
            own.detach()  # the transport owns the descriptor

    def write_now(self, frames: bytes) -> None:
        """Write without waiting: for a caller that checked can_write_now, after the first (awaited) write sent the
        headers. Raises ConnectionResetError when the client is gone."""
        writer = self._payload_writer
        transport = self._req.transport if self._req is not None else None
        if writer is None or transport is None or transport.is_closing():
            raise ConnectionResetError("the client is gone")
        if not frames:
            return  # an empty chunk would be the end of the body
        # Hand-written: aiohttp's writes are coroutines, and a push from the reply cannot await; a chunk is
        # "size CRLF data CRLF" (RFC 9112, 7.1).
        transport.write(b"%x\r\n%b\r\n" % (len(frames), frames) if writer.chunked else frames)  # type: ignore[attr-defined]
        writer.output_size += len(frames)
        self.last_write = time.monotonic()

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
    options_at_accept: bool = False


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
    on_gone: Callable[[], object] | None = None,
) -> web.StreamResponse:
    """Send source.events[cursor:], then return the response, which follows the source to its last event once the
    handler has returned (aiohttp runs the rest from write_eof). on_gone runs if the client leaves first.

    With session_id, the stream ends when that login session does (a logout, here or in another process).
    A dialect other than the native one brings its own first frame and its own slow-consumer frame."""
    resp = BatchingEventSourceResponse(
        headers=headers,
        sep=SSE_SEP,
        allow_all_methods=True,
        send_timeout=options.send_timeout_s,
        ping_interval=options.heartbeat_s,
    )
    resp.sndbuf_bytes = options.sndbuf_bytes
    resp.options_at_accept = options.options_at_accept
    resp.heartbeat = options.heartbeat
    try:
        await resp.prepare(request)
    except BaseException:
        source.close()  # the client left before the first byte: stop following for it
        raise
    subscription = Subscription(request, resp, source, cursor, options.max_lag, trace_id, metrics, session_id, dialect,
                                on_gone)
    following = False
    try:
        # Awaited even when empty: it sends the headers, so that later writes may go straight to the transport.
        following = await subscription.first_write(retry_frame(options.retry_ms) if dialect is None else dialect.opening)
    finally:
        if not following:
            subscription.end()
    if following:
        resp.subscription = subscription
    return resp


class Subscription:
    """One subscriber of a source after its first write (ADR 13). The source calls push() when it has something
    new, and push() writes it straight to the socket when that cannot block: no task switch per batch. What can
    block (a full transport), a slow consumer and the end are handled by follow_to_end(), which aiohttp awaits as
    the response's write_eof once the handler has returned: an idle stream holds no handler frames, only that
    coroutine and one future (memory per idle stream: bench/idle_memory.py)."""

    __slots__ = ("_request", "_resp", "_source", "cursor", "_max_lag", "_trace_id", "_metrics", "_session_id",
                 "_dialect", "_on_gone", "_waiter", "_gone", "_stopped", "_ended", "_writes", "_events", "_first")

    def __init__(self, request: web.Request, resp: BatchingEventSourceResponse, source: EventSource, cursor: int,
                 max_lag: int, trace_id: str, metrics: Metrics, session_id: str | None, dialect: Framing | None,
                 on_gone: Callable[[], object] | None) -> None:
        self._request = request
        self._resp = resp
        self._source = source
        self.cursor = cursor
        self._max_lag = max_lag
        self._trace_id = trace_id
        self._metrics = metrics
        self._session_id = session_id
        self._dialect = dialect
        self._on_gone = on_gone
        self._waiter: asyncio.Future[None] | None = None
        self._gone = self._stopped = self._ended = False
        # Counts handed to the metrics in bunches: a counter update per event adds up at 50k events/s.
        self._writes = self._events = 0
        self._first = True
        metrics.subscribers.inc()
        if session_id is not None:
            request.app[appkeys.CONNECTIONS].add(session_id, resp, self.stop)

    async def first_write(self, opening: bytes) -> bool:
        """Write the opening and what the source has; True when the stream goes on (follow_to_end takes it over)."""
        batch = self._source.events[self.cursor:]
        self.cursor += len(batch)
        try:
            await self._resp.send_frames(opening + b"".join(event.frame for event in batch))
        except (ConnectionResetError, TimeoutError):
            self._gone = True
            return False
        # The headers are on the wire and nothing reads them again; their table (with what multidict keeps from
        # serializing it) was ~2 KB of every open stream (bench/idle_memory.py).
        self._resp.headers.clear()
        self._wrote(len(batch))
        return not self._all_sent()

    def _all_sent(self) -> bool:
        # The end is the source's, not its last event's: a reply still letting go of its session has not ended.
        source = self._source
        return source.finished and self.cursor >= len(source.events)

    def push(self) -> None:
        """The source has news (called by it, synchronously): write it now if that cannot block, else wake
        follow_to_end."""
        waiter = self._waiter
        if waiter is None:
            return  # follow_to_end is writing and will see what is new
        events = self._source.events
        waiting = len(events) - self.cursor
        if waiting > 0:
            batch = events[self.cursor:]
            frames = batch[0].frame if waiting == 1 else b"".join([event.frame for event in batch])
            if waiting > self._max_lag or not self._resp.can_write_now(len(frames)):
                self._wake(waiter)
                return
            try:
                self._resp.write_now(frames)
            except ConnectionResetError:
                self._gone = True
                self._wake(waiter)
                return
            self.cursor += waiting
            self._wrote(waiting)
            if batch[-1].name not in TERMINAL_EVENTS:
                return  # the end comes with a terminal event, and the source pushes again once it has ended
        if self._all_sent():
            self._wake(waiter)

    def _wake(self, waiter: asyncio.Future[None]) -> None:
        self._waiter = None
        if not waiter.done():
            waiter.set_result(None)

    def stop(self) -> None:
        """End the stream now (its login session ended)."""
        self._stopped = True
        if self._waiter is not None:
            self._wake(self._waiter)

    def client_lost(self) -> None:
        self._gone = True
        self.stop()

    @property
    def ended(self) -> bool:
        return self._ended

    async def follow_to_end(self, data: bytes) -> None:
        """Until the source's end, the client's departure or a stop; then the end of the body."""
        resp, source = self._resp, self._source
        loop = asyncio.get_running_loop()
        source.subscribe(self)
        try:
            while not (self._gone or self._stopped):
                events = source.events
                if len(events) - self.cursor > self._max_lag:
                    self._metrics.slow_consumers.inc()
                    await _drop_slow_consumer(resp, self._trace_id, self._dialect)
                    break
                batch = events[self.cursor:]
                if batch:
                    self.cursor += len(batch)
                    await resp.send_frames(b"".join(event.frame for event in batch))
                    self._wrote(len(batch))
                elif source.finished:
                    break
                else:
                    self._waiter = waiter = loop.create_future()
                    try:
                        await waiter
                    finally:
                        self._waiter = None
        except (ConnectionResetError, TimeoutError):
            self._gone = True
        except asyncio.CancelledError:
            transport = self._request.transport
            self._gone = transport is None or transport.is_closing()  # a test server cancels on a hang-up
            raise
        finally:
            self.end()
            await resp.wait()
        await EventSourceResponse.write_eof(resp, data)

    def _wrote(self, events: int) -> None:
        self._writes += 1
        self._events += events
        if self._first and events:
            self._first = False
            ttfe = time.perf_counter() - self._request.get(STARTED_AT, time.perf_counter())
            self._metrics.time_to_first_event.observe(ttfe)
            self._metrics.recent_ttfe.add(ttfe)
        if self._events >= _FLUSH_EVERY:
            self._flush_counts()

    def _flush_counts(self) -> None:
        if self._writes:
            self._metrics.writes.inc(self._writes)
            self._metrics.events_sent.inc(self._events)
            self._metrics.recent_events.add(self._events)
            self._writes = self._events = 0

    def end(self) -> None:
        """Stop following (once): the source, the session's list, the metrics, and on_gone if the client left."""
        if self._ended:
            return
        self._ended = True
        # The response and its subscription refer to each other: left so (an end of the body that failed, a client
        # gone mid-reply), the connection and everything it holds waited for the collector's rare full passes.
        self._resp.subscription = None
        if self._session_id is not None:
            self._request.app[appkeys.CONNECTIONS].discard(self._session_id, self._resp)
        self._source.unsubscribe(self)
        self._source.close()
        self._flush_counts()
        self._metrics.subscribers.dec()
        self._resp.stop_streaming()
        if self._gone and self._on_gone is not None:
            self._on_gone()


_FLUSH_EVERY = 64


async def _drop_slow_consumer(resp: BatchingEventSourceResponse, trace_id: str, dialect: Framing | None) -> None:
    current_trace_id.set(trace_id)  # the middleware, which set it, has returned
    log.info("dropping a slow subscriber")
    if dialect is not None:
        await resp.send_frames(dialect.slow_consumer(trace_id))
        return
    message = "this client fell too far behind; resume with Last-Event-ID"
    await resp.send_frames(unnumbered_error("slow_consumer", message, trace_id))
