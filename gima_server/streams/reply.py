"""One reply: a task of its own that runs the agent, logs ordered events and stores the text."""

from __future__ import annotations

import asyncio
import logging
import time
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from typing import Any, AsyncGenerator, AsyncIterator, Awaitable, Callable, Protocol, Sequence, TypeVar, cast

from ..agents.base import Agent, AgentEvent, AgentRequest
from ..agents.upstream import UpstreamError
from ..background import kept, stop_tasks
from ..frozen import evolve
from ..locks import Lease
from ..observability import otel
from ..observability.tracing import current_trace_id
from ..store.base import Exchange, Message, Receipt, Store, StoreUnavailable
from ..webhooks.model import reply_event
from .checkpoint import Checkpointer
from .events import TERMINAL_EVENTS, Event, delta_event, make_event, meta_data
from .ownership import Busy, Ownership
from .snapshot import snapshot_event
from .wakeups import Wakeups

log = logging.getLogger("gima.reply")
T = TypeVar("T")

_ERROR_MESSAGES = {
    "superseded": "a newer message from this session replaced this reply",
    "cancelled": "the reply was cancelled",
    "shutting_down": "the server is shutting down",
    "too_long": "the reply reached its size limit",
    "interrupted": "the process producing this reply stopped before it ended",
    "backing_unavailable": "the shared backing (Redis) is unavailable; resume shortly",
    "internal_error": "the reply failed",
    "stream_busy": "the previous reply of this session did not stop in time; try again",
    "upstream_timeout": "the model did not answer in time",
    "upstream_unavailable": "the model is unavailable right now; try again shortly",
    "upstream_error": "the model refused the request",
    "store_unavailable": "the store could not save this reply; send the message again shortly",
}


# What a finished reply holds beyond its frames and text, fitted to tracemalloc's count of what evicting replies of
# 80 to 180 events frees (estimate / measured = 1.02 for each; bench/README.md): an Event (56 B), its frame's bytes
# header (33 B), its id, list slots and the delta's str header per event; the Reply, its task, exchange, lists and
# dicts per reply.
EVENT_OVERHEAD_BYTES = 160
REPLY_OVERHEAD_BYTES = 6 * 1024


class Pushable(Protocol):
    def push(self) -> None:
        """The source has something new (or has finished); called synchronously, so it must not block."""
        ...


class EventSource(Protocol):
    """What a subscriber reads: an ordered list of events that may still grow. A subscriber either awaits
    wait_beyond() or subscribes to be pushed to."""

    @property
    def events(self) -> Sequence[Event]: ...

    @property
    def finished(self) -> bool: ...

    async def wait_beyond(self, cursor: int) -> None: ...

    def subscribe(self, subscriber: Pushable) -> None: ...

    def unsubscribe(self, subscriber: Pushable) -> None: ...

    def close(self) -> None:
        """The subscriber is done with it (a remote follower stops reading for it)."""
        ...


class Subscribers:
    """Who is pushed to when a log grows (insertion-ordered: the first to subscribe is written to first)."""

    __slots__ = ("_pushed",)

    def __init__(self) -> None:
        self._pushed: dict[Pushable, None] = {}

    def subscribe(self, subscriber: Pushable) -> None:
        self._pushed[subscriber] = None

    def unsubscribe(self, subscriber: Pushable) -> None:
        self._pushed.pop(subscriber, None)

    def push(self) -> None:
        pushed = self._pushed
        if len(pushed) == 1:  # the usual case: one reader of the reply
            next(iter(pushed)).push()
        elif pushed:
            for subscriber in tuple(pushed):  # a push may unsubscribe
                subscriber.push()


_CANCELLED_CODES = frozenset({"cancelled", "superseded", "shutting_down"})


def final_status(end_code: str) -> str:
    """How a stored reply reads once it ended with end_code ("done" or an error code)."""
    if end_code == "running":
        return "streaming"
    if end_code == "done":
        return "complete"
    return "cancelled" if end_code in _CANCELLED_CODES else "error"


@dataclass(frozen=True, slots=True)
class ReplyLimits:
    checkpoint_every: int
    max_events: int
    store_retry_s: float = 30.0  # how long a reply's writes wait out a store fault (disk full, read-only)
    # At most one checkpoint per this many seconds: a reply that streams faster than that is written at its start
    # and its end only (the final write follows within a moment, so a checkpoint would be overwritten unread).
    checkpoint_min_s: float = 0.5


class Reply:
    def __init__(
        self,
        exchange: Exchange,
        *,
        session_id: str,
        trace_id: str,
        store: Store,
        agent: Agent,
        limits: ReplyLimits,
        ownership: Ownership,
        on_finish: Callable[[Reply], None] = lambda reply: None,
        finalizers: Sequence[Callable[[Reply], Awaitable[None]]] = (),
        on_append: Callable[[Reply], None] | None = None,
        wakeups: Wakeups | None = None,
    ) -> None:
        self.exchange = exchange
        self.message_id = exchange.reply_message_id
        self.chat_id = exchange.chat_id
        self.user_id = exchange.user_id
        self.session_id = session_id
        self.trace_id = trace_id
        self.events: list[Event] = []
        self.started_at = time.monotonic()
        self.finished_at: float | None = None
        self.cancel_reason: str | None = None
        self.end_code = "running"  # "done" or the error code, once the reply has ended
        self._store = store
        self._agent = agent
        self._limits = limits
        self._ownership = ownership
        self._lease: Lease | None = None
        self._started = False
        self._on_finish = on_finish
        self._finalizers = finalizers
        self.delta_count = 0
        self.usage: tuple[int, int] | None = None  # (input, output) tokens, when the upstream reports them
        self._checkpoints = Checkpointer(store, exchange.reply_message_id)
        self._last_checkpoint_at = time.monotonic()  # the start: the exchange's own write carries what there is
        self._written: asyncio.Task[None] | None = None
        # True once the exchange's write is over, whichever way (written, refused, or never tried): a follow-up naming
        # a new chat waits for it (Registry.chat_being_written). The future exists only while someone waits: an
        # Event per reply was ~860 B of every retained reply.
        self.exchange_settled = False
        self._settled_waiter: asyncio.Future[None] | None = None
        self._changed = asyncio.Event()
        self._subscribers = Subscribers()
        self._parts: list[str] = []
        self.text_chars = 0
        self.sections: list[tuple[str, int]] = []  # (agent, offset of its first character): see snapshot.py
        self._on_append = on_append
        self._wakeups = wakeups
        self.upstream_closed = True  # until the agent's stream is opened and not yet closed
        self._prompt_chars = 0
        self.model = exchange.model  # the model answering: a fallback's `model` event moves it
        self.finish_reason = "stop"  # "length" when the model was cut by its token limit
        self.fallbacks: list[tuple[str, str, str]] = []  # (model, fallback from, reason), for the metrics
        self.span: Any = None  # its gima.reply span, when tracing is on
        self.append("meta", meta_data(self.message_id, self.chat_id, trace_id, self.model, exchange.context_messages))
        # The loop, asked for once: each asyncio.get_running_loop() is a getpid() system call on CPython 3.11.
        self._loop = asyncio.get_running_loop()
        self.task: asyncio.Task[None] = self._loop.create_task(self._run(), name=f"reply-{self.message_id}")
        self.task.add_done_callback(_let_go_of_cancellation)

    @property
    def finished(self) -> bool:
        return self.finished_at is not None

    @property
    def text(self) -> str:
        return "".join(self._parts)

    def text_parts(self, start: int, end: int) -> str:
        """The text of deltas start..end-1 (a publisher sends only what is new)."""
        return "".join(self._parts[start:end])

    @property
    def part_count(self) -> int:
        return len(self._parts)

    @property
    def status(self) -> str:
        return final_status(self.end_code)

    def retained_bytes(self) -> int:
        """What keeping this finished reply for replay costs: its frames and text, plus what Python spends per event
        and per reply around them (measured: bench/README.md, Memory under sustained load)."""
        frames = sum(len(event.frame) for event in self.events)
        return frames + self.text_chars + len(self.events) * EVENT_OVERHEAD_BYTES + REPLY_OVERHEAD_BYTES

    def append(self, name: str, data: dict[str, Any]) -> Event:
        return self._log(make_event(len(self.events) + 1, name, data))

    def _log(self, event: Event) -> Event:
        self.events.append(event)
        # Held for the shared wake-up only after the first token: what comes before it (the meta event, an agent's
        # start) and the first token itself are what a user waits for (with the multi-agent demo the first token is
        # the third event, and holding it cost a turn of a saturated loop, ~0.7 s, in bench.ten_thousand's ramp).
        if self._wakeups is None or self.delta_count == 0 or event.name in TERMINAL_EVENTS:
            self.wake()
        else:
            self._wakeups.later(self)
        if self._on_append is not None:
            self._on_append(self)
        return event

    def close(self) -> None:
        return None

    def subscribe(self, subscriber: Pushable) -> None:
        self._subscribers.subscribe(subscriber)

    def unsubscribe(self, subscriber: Pushable) -> None:
        self._subscribers.unsubscribe(subscriber)

    def wake(self) -> None:
        """Let every subscriber take what is new."""
        self._changed.set()
        self._changed.clear()
        self._subscribers.push()

    async def wait_beyond(self, cursor: int) -> None:
        while len(self.events) <= cursor and not self.finished:
            await self._changed.wait()

    def cancel(self, reason: str) -> None:
        if not self.finished and self.cancel_reason is None:
            self.cancel_reason = reason
            # A task cancelled before its first step never runs its body (no finally, no last event):
            # such a reply notices cancel_reason as it starts instead.
            if self._started:
                self.task.cancel()

    async def _run(self) -> None:
        current_trace_id.set(self.trace_id)
        self._started = True
        self.span = otel.start_reply_span(self.message_id, self.trace_id, self.model)
        if self.span is not None:
            otel.make_current(self.span)  # the reply's store, Redis and upstream calls are its children
        try:
            if self.cancel_reason is not None:
                raise asyncio.CancelledError
            async with self._owned():
                try:
                    await self._produce()
                except asyncio.CancelledError:
                    await self._end_with_error(self.cancel_reason or "cancelled", "cancelled")
                    raise
                except Busy:
                    await self._end_with_error("stream_busy", "error")
                except _TooLong:
                    await self._end_with_error("too_long", "error")
                except StoreUnavailable as exc:
                    log.error("reply %s: the store stayed unavailable (%s)", self.message_id, exc.reason)
                    await self._end_with_error("store_unavailable", "error", exc.retry_after_s)
                except UpstreamError as exc:
                    log.warning("reply %s: %s", self.message_id, exc.message, extra={"code": exc.code})
                    await self._end_with_error(exc.code, "error", exc.retry_after_s)
                except _Stale:
                    self.append("error", self._error_data("superseded"))  # the newer producer's text stands
                except Exception:
                    log.exception("reply %s failed", self.message_id)
                    await self._end_with_error("internal_error", "error")
        except asyncio.CancelledError:
            if not self.events[-1].terminal:  # cancelled (superseded) before it could start
                await self._end_unowned(self.cancel_reason or "cancelled", "cancelled")
            raise
        except Busy:
            await self._end_unowned("stream_busy", "error")
        except Exception:
            log.exception("reply %s could not start", self.message_id)
            await self._end_unowned("internal_error", "error")
        finally:
            self.finished_at = time.monotonic()
            self._settle_exchange()
            self._changed.set()
            self._subscribers.push()
            self._on_finish(self)
            await self._finalize()
            if self.span is not None:
                otel.end_reply_span(self.span, self.end_code, self.status, len(self.events), self.model)
            log.info(
                "reply ended",
                extra={
                    "messageId": self.message_id,
                    "end": self.end_code,
                    "events": len(self.events),
                    "durationMs": round((self.finished_at - self.started_at) * 1000),
                },
            )

    async def _finalize(self) -> None:
        """Book-keeping after the last event (idempotency record kept, token budget settled)."""
        with suppress(Exception):
            await self._exchange_written()  # ours to await on every path, even one that did not need it
        for finalizer in self._finalizers:
            try:
                await finalizer(self)
            except Exception:
                log.exception("finishing work for reply %s failed", self.message_id)
        # Last, so that the book-keeping above never waits on it: a checkpoint the final write did not wait for.
        await self._checkpoints.settle()

    @asynccontextmanager
    async def _owned(self) -> AsyncIterator[None]:
        """Hold the session's lease (after its previous reply let go) while producing, renewing it on the way."""
        lease = self._lease = await self._ownership.take_session(self.session_id, self.message_id)
        # Most replies end before their first renewal is due: the watchdog task starts only then (a task made
        # and stopped per reply was ~3 % of a reply's start and end in bench.turnover's profile).
        keeper: asyncio.Task[None] | None = None

        def start_keeper() -> None:
            nonlocal keeper
            keeper = self._loop.create_task(self._ownership.keep(lease, lambda: self.cancel("superseded"), wait_first=False))

        timer = self._loop.call_later(self._ownership.renew_every_s, start_keeper)
        try:
            yield
        finally:
            timer.cancel()
            if keeper is not None:
                await stop_tasks([keeper])
            await self._ownership.give_back(lease)

    @property
    def _fence(self) -> int:
        return self._lease.fence if self._lease is not None else 0

    async def _produce(self) -> None:
        history = self._history()
        # The model is asked while the store writes the exchange: the first token does not wait for the disk.
        self._written = self._loop.create_task(self._write_exchange())
        await self._generate(history)
        await self._exchange_written()
        if self._checkpoints.stale:  # a checkpoint was refused already: a newer producer owns this reply
            raise _Stale
        # Not after the checkpoint still on its way: every store applies a checkpoint only to a reply still
        # streaming, so one that lands after the final write changes nothing, and the wait cost each reply's end
        # two more turns of a busy loop (bench.ten_thousand). A newer producer's fence refuses the final write itself.
        final_id = len(self.events) + 1
        if not await kept(self._stored(lambda: self._store.finish_reply(
                self.message_id, self.text, "complete", self.finish_reason, final_id, self._fence, self.usage,
                sections=self.sections, model=self._moved_model(), webhook=self._webhook("complete", self.finish_reason)))):
            raise _Stale
        self.append("done", {"messageId": self.message_id, "content": self.text, "finishReason": self.finish_reason,
                             "usage": self.receipt().usage()})
        self.end_code = "done"

    def _history(self) -> list[tuple[str, str]]:
        """The conversation so far, ending with this message: the history the route fitted to the model's budget
        (context/reader.py) when it accepted the message."""
        return [*self.exchange.context, ("user", self.exchange.content)]

    async def _write_exchange(self) -> None:
        try:
            await self._stored(lambda: self._begin_exchange(evolve(self.exchange, fence=self._fence)))
        finally:
            self._settle_exchange()

    async def _begin_exchange(self, exchange: Exchange) -> None:
        """Writes into one chat take its lock, so that its messages are numbered in order across processes. A chat
        this exchange makes has no other writer before it is stored (a follow-up naming it waits for that:
        Registry.chat_being_written here, chats.chat_exists elsewhere), so it takes none (~9 µs of a start)."""
        if exchange.new_chat_title is not None:
            await self._store.begin_exchange(exchange)
            return
        async with self._ownership.chat_order(self.chat_id):
            await self._store.begin_exchange(exchange)

    def _settle_exchange(self) -> None:
        self.exchange_settled = True
        waiter, self._settled_waiter = self._settled_waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def wait_exchange_settled(self) -> None:
        if self.exchange_settled:
            return
        if self._settled_waiter is None:
            self._settled_waiter = self._loop.create_future()
        await asyncio.shield(self._settled_waiter)  # one waiter's timeout must not cancel the others' wait

    async def _stored(self, write: Callable[[], Awaitable[T]]) -> T:
        """A store write that waits out a store fault (disk full, read-only) for up to store_retry_s, so that a
        reply the client has seen is kept once the store recovers; past that, StoreUnavailable ends the reply."""
        deadline = time.monotonic() + self._limits.store_retry_s
        delay = 0.1
        while True:
            try:
                return await write()
            except StoreUnavailable as exc:
                if time.monotonic() + delay > deadline:
                    raise
                log.warning("reply %s: the store cannot write (%s); retrying", self.message_id, exc.reason)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)

    async def _exchange_written(self) -> None:
        """Wait for the exchange write, if one was started (every later write must come after it)."""
        if self._written is not None:
            if not self._written.done():  # it usually is by the reply's end: no waiter to make
                await asyncio.wait({self._written})
            error = None if self._written.cancelled() else self._written.exception()
            if error is not None:
                raise error

    async def _generate(self, history: list[tuple[str, str]]) -> None:
        instructions = "\n\n".join(content for role, content in history if role == "system")
        turns = [(role, content) for role, content in history if role != "system"]
        self._prompt_chars = sum(len(content) for _, content in history)
        request = AgentRequest(content=self.exchange.content, history=turns, trace_id=self.trace_id,
                               instructions=instructions, options=self.exchange.options, reply_id=self.message_id,
                               chat_id=self.chat_id)
        agent_stream = cast(AsyncGenerator[AgentEvent, None], self._agent.stream(request))  # agents are async generators
        self.upstream_closed = False
        try:
            async for agent_event in agent_stream:
                self._take(agent_event)
        finally:
            await self._close_agent(agent_stream)

    async def _close_agent(self, agent_stream: AsyncGenerator[AgentEvent, None]) -> None:
        """A cancel closes the upstream call at once; the receipt says whether that worked (billing stopped)."""
        try:
            await agent_stream.aclose()
        except Exception:
            log.exception("reply %s: closing the agent's stream failed", self.message_id)
            return
        self.upstream_closed = True

    def _checkpoint_due(self) -> bool:
        """The exchange is stored and the last checkpoint (or the start) is at least checkpoint_min_s old."""
        if not self._exchange_stored():
            return False
        now = time.monotonic()
        if now - self._last_checkpoint_at < self._limits.checkpoint_min_s:
            return False
        self._last_checkpoint_at = now
        return True

    def _exchange_stored(self) -> bool:
        """The exchange is in the store (a checkpoint of a message that was never written would read as stale)."""
        written = self._written
        return written is not None and written.done() and not written.cancelled() and written.exception() is None

    def receipt(self) -> Receipt:
        """What the reply has cost so far: the upstream's count when it gave one, else this server's
        (a token per delta, and about four characters of prompt per input token)."""
        if self.usage is not None:
            return Receipt(self.upstream_closed, self.usage[0], self.usage[1], estimated=False)
        return Receipt(self.upstream_closed, -(-self._prompt_chars // 4), self.delta_count, estimated=True)

    def _take(self, agent_event: AgentEvent) -> None:
        if self.cancel_reason is not None:  # a cancel that a library swallowed (see background.stop_tasks)
            raise asyncio.CancelledError
        name = agent_event.name
        if name != "delta":  # the rare events first tested apart, so that a delta pays one comparison for them
            self._take_other(agent_event)
            return
        if len(self.events) >= self._limits.max_events - 1:
            raise _TooLong
        text, agent = agent_event.data["text"], str(agent_event.data.get("agent", "assistant"))
        self._log(delta_event(len(self.events) + 1, agent, text))
        if not self.sections or self.sections[-1][0] != agent:
            self.sections.append((agent, self.text_chars))
        self._parts.append(text)
        self.text_chars += len(text)
        self.delta_count += 1
        if self.delta_count == 1 and self.span is not None:
            self.span.add_event("first_token")
        if self.delta_count % self._limits.checkpoint_every == 0 and self._checkpoint_due():
            self._checkpoints.offer(lambda: self.text, self._fence)
            if self._checkpoints.stale:
                raise _Stale

    def _take_other(self, agent_event: AgentEvent) -> None:
        """Usage and finish are kept, never logged; a fallback's `model` moves the answering model; the rest is
        logged as it is."""
        data = agent_event.data
        if agent_event.name == "usage":
            self.usage = (int(data["input"]), int(data["output"]))
            return
        if agent_event.name == "finish":
            self.finish_reason = str(data["reason"])
            return
        if len(self.events) >= self._limits.max_events - 1:
            raise _TooLong
        if agent_event.name == "model":
            self.model = str(data["model"])
            self.fallbacks.append((self.model, str(data["fallbackFrom"]), str(data["reason"])))
        self.append(agent_event.name, data)

    async def _end_unowned(self, code: str, status: str) -> None:
        """The reply never produced: keep the user's message (and an ended reply to it), then the error event."""
        try:
            await asyncio.shield(self._record_unstarted(code, status))
        except Exception:
            log.exception("could not store the unstarted reply %s", self.message_id)
        self.append("error", self._error_data(code))

    async def _record_unstarted(self, code: str, status: str) -> None:
        try:
            await self._begin_exchange(self.exchange)
        finally:
            self._settle_exchange()
        await self._store.finish_reply(self.message_id, "", status, code, len(self.events) + 1,
                                       receipt=self._stop_receipt(code), webhook=self._webhook(status, code))

    def _webhook(self, status: str, finish_reason: str) -> tuple[str, str]:
        """The reply.* event its final write queues for webhook endpoints (the text goes only to those that opted
        in, added when sent)."""
        return reply_event(self.message_id, self.chat_id, self.user_id, self.model, status, finish_reason,
                           self.receipt().usage(), time.time())

    def _moved_model(self) -> str | None:
        """The model to record at the end: None when the one begin_exchange wrote still answers."""
        return self.model if self.model != self.exchange.model else None

    def _stop_receipt(self, code: str) -> Receipt | None:
        return self.receipt() if code in _CANCELLED_CODES else None

    def _error_data(self, code: str) -> dict[str, Any]:
        self.end_code = code
        data: dict[str, Any] = {"code": code, "message": _ERROR_MESSAGES.get(code, code), "traceId": self.trace_id}
        receipt = self._stop_receipt(code)
        if receipt is not None:
            data.update(receipt.public())
        return data

    async def _end_with_error(self, code: str, status: str, retry_after_s: float | None = None) -> None:
        with suppress(Exception):
            await self._exchange_written()  # failed: the finish below writes nothing, the error event still goes out
        # Not after a checkpoint still on its way (see _produce): the session's lease is held until this write.
        final_id = len(self.events) + 1
        try:
            await kept(self._stored(lambda: self._store.finish_reply(
                self.message_id, self.text, status, code, final_id, self._fence, self.usage, self._stop_receipt(code),
                self.sections, self._moved_model(), self._webhook(status, code))))
        except Exception:
            log.exception("could not store the partial reply %s", self.message_id)
        error = self._error_data(code)
        if retry_after_s is not None:
            error["retryAfter"] = round(retry_after_s, 3)
        self.append("error", error)


def _let_go_of_cancellation(task: asyncio.Task[None]) -> None:
    """A cancelled (superseded, stopped) reply's task keeps its CancelledError, whose traceback's frames hold the
    reply: a cycle that left the reply and all its events to the collector's rare full passes (bench/soak.py).
    Asking for the result once hands that saved error over (asyncio clears it), so the reply is freed when let go."""
    if task.cancelled():
        with suppress(asyncio.CancelledError):
            task.result()


class _TooLong(Exception):
    pass


class _Stale(Exception):
    """The store refused our write: a newer producer owns this reply."""


class StoredReply:
    """A finished reply rebuilt from the store once its event log has gone.

    From the start it reads meta, one delta and the final event. A client that had part of the reply gets a
    `snapshot` (all the stored text, history lost) then the final event. The final event keeps the id the live
    reply gave it, so a client that saw it gets nothing (204); a reply whose producer died gets an id above any
    its producer could have used (the reply's event bound), so its client always learns that it was interrupted.
    """

    finished = True

    def __init__(self, message: Message, trace_id: str, last_event_id: int, unknown_final_id: int) -> None:
        streaming = message.status == "streaming"
        final_id = max(unknown_final_id if streaming else message.event_count or unknown_final_id, 3)
        if message.status == "complete":
            done: dict[str, Any] = {
                "messageId": message.id, "content": message.content, "finishReason": message.finish_reason or "stop",
            }
            if message.input_tokens is not None and message.output_tokens is not None:
                done["usage"] = {"inputTokens": message.input_tokens, "outputTokens": message.output_tokens,
                                 "estimated": False}
            final = make_event(final_id, "done", done)
        else:
            code = "interrupted" if streaming else message.finish_reason or "interrupted"
            error: dict[str, Any] = {"code": code, "message": _ERROR_MESSAGES.get(code, code), "traceId": trace_id}
            if message.receipt is not None:
                error.update(message.receipt.public())
            final = make_event(final_id, "error", error)
        status = "error" if streaming else message.status
        if last_event_id >= final_id:
            self.events: list[Event] = []
        elif last_event_id == 0:
            self.events = [
                make_event(1, "meta", meta_data(message.id, message.chat_id, trace_id, message.model,
                                                message.context_messages)),
                make_event(2, "delta", {"agent": "assistant", "text": message.content}),
                final,
            ]
        elif last_event_id == final_id - 1:
            self.events = [final]
        else:
            self.events = [snapshot_event(final_id - 1, message.id, status, message.content, ()), final]

    async def wait_beyond(self, cursor: int) -> None:
        return None

    def subscribe(self, subscriber: Pushable) -> None:
        return None  # finished: nothing will come

    def unsubscribe(self, subscriber: Pushable) -> None:
        return None

    def close(self) -> None:
        return None
