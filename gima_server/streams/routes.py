"""POST /api/chat/stream, GET /api/chat/streams/{messageId}/events, POST /api/chat/streams/{messageId}/cancel."""

from __future__ import annotations

import time
from contextlib import suppress
from typing import Any

from aiohttp import web

from .. import appkeys
from ..admission import Priority
from ..agents.models import UnknownModel
from ..agents.sampling import SAMPLING_KEYS, SamplingError, check_sampling
from ..auth.sessions import Principal, require_user
from ..chats import chat_exists
from ..context.reader import fitted
from ..context.window import TooLarge
from ..errors import ApiError, invalid, not_found
from ..frozen import evolve
from ..idempotency import keyed_fingerprint
from ..ids import body_id, idempotency_key, new_chat_id, new_id, new_message_id, path_id
from ..middleware import SERVER_SPAN
from ..observability import otel
from ..observability.sentry import report_reply_end
from ..observability.tracing import request_trace_id
from ..plans.catalog import Plan
from ..store.base import Exchange
from ..validation import Field, read_json, whole_number
from .registry import StartOutcome, StartRequest
from .reply import EventSource, Reply
from .sse import SubscriberOptions, stream_events

STREAM_BODY = {
    "chatId": Field(str, max_chars=64),
    "content": Field(str, required=True),
    "messageId": Field(str, max_chars=64),
    "model": Field(str, max_chars=200),
    "options": Field(dict),
}
_TITLE_CHARS = 60


def subscriber_options(request: web.Request) -> SubscriberOptions:
    s = request.app[appkeys.SETTINGS]
    return SubscriberOptions(s.heartbeat_s, s.sse_retry_ms, s.sse_send_timeout_s, s.subscriber_max_lag, s.sse_sndbuf_bytes,
                             request.app[appkeys.HEARTBEAT], request.app.get(appkeys.STREAM_OPTIONS_AT_ACCEPT, False))


def new_chat_title(content: str) -> str:
    return content.strip().splitlines()[0][:_TITLE_CHARS]


def chosen_model(request: web.Request, requested: object) -> str:
    """The model id a request names (the default when none); 400 naming the ids when there is no such model."""
    if requested is not None and not isinstance(requested, str):
        raise invalid("model must be a string (GET /api/models lists the ids)")
    try:
        return request.app[appkeys.MODELS].resolve(requested)
    except UnknownModel as exc:
        raise invalid(str(exc)) from None


def checked_options(raw: object) -> dict[str, Any]:
    """A request's `options` object: sampling options by OpenAI's names and ranges (400 naming the field)."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise invalid("options must be an object")
    unknown = sorted(set(raw) - set(SAMPLING_KEYS))
    if unknown:
        raise invalid(f"options: unknown field(s) {', '.join(unknown)} (known: {', '.join(SAMPLING_KEYS)})")
    try:
        return check_sampling(raw)
    except SamplingError as exc:
        raise invalid(f"options.{exc.field} {exc.why}") from None


def checked_content(request: web.Request, content: str) -> str:
    limit = request.app[appkeys.SETTINGS].max_content_bytes
    if not content.strip():
        raise invalid("content must not be empty")
    if len(content.encode()) > limit:
        raise ApiError(413, "payload_too_large", f"content is longer than {limit} bytes")
    return content


async def _exchange(request: web.Request, principal: Principal, body: dict[str, object]) -> tuple[Exchange, bool]:
    """Build the exchange to write; also say whether its messageId already names one of this user's messages."""
    store = request.app[appkeys.STORE]
    user_id = principal.user.id
    content = checked_content(request, str(body["content"]))
    model = chosen_model(request, body["model"])  # checked before any lookup: a bad request changes nothing
    options = checked_options(body["options"])
    chat_id = body["chatId"]
    title: str | None = None
    if chat_id is None:
        chat_id, title = new_chat_id(), new_chat_title(content)
    elif not await chat_exists(request, user_id, body_id(str(chat_id), "chatId")):
        raise not_found("chat")
    message_id = body_id(str(body["messageId"]), "messageId") if body["messageId"] else new_message_id()
    owner = await store.message_owner(message_id) if body["messageId"] else None
    if owner is not None and owner != user_id:
        raise ApiError(409, "conflict", "this messageId is already in use")
    exchange = Exchange(user_id, str(chat_id), title, new_message_id(), message_id, content, time.time(),
                        model=model, options=options)
    return exchange, owner is not None


async def post_stream(request: web.Request) -> web.StreamResponse:
    principal = await require_user(request)
    body = await read_json(request, STREAM_BODY)
    header_key = request.headers.get("Idempotency-Key")
    key = idempotency_key(header_key) if header_key is not None else body["messageId"]
    source, outcome = await begin_reply(request, principal, body, key)
    trace_id = request_trace_id(request)
    headers = {"Idempotent-Replayed": "true"} if outcome.replayed else None
    metrics = request.app[appkeys.METRICS]
    reply = outcome.reply if request.app[appkeys.SETTINGS].cancel_on_disconnect else None
    return await stream_events(request, source, 0, subscriber_options(request), trace_id, metrics, headers,
                               principal.session_id, on_gone=None if reply is None else lambda: reply.cancel("cancelled"))


async def begin_reply(
    request: web.Request, principal: Principal, body: dict[str, Any], key: str | None
) -> tuple[EventSource, StartOutcome]:
    """Start (or attach to) the reply a message asks for; shared by the SSE route and the WebSocket."""
    exchange, message_exists = await _exchange(request, principal, body)
    # The same operation over SSE or WebSocket: one fingerprint, so a retry on the other transport replays.
    print_ = keyed_fingerprint(key, "POST", "/api/chat/stream", body)
    return await start_reply(request, principal, exchange, message_exists, key, print_)


async def start_reply(
    request: web.Request, principal: Principal, exchange: Exchange, message_exists: bool, key: str | None, print_: str,
    *, all_context: bool = False,
) -> tuple[EventSource, StartOutcome]:
    """Start the reply to an exchange, or join the one an identical request started; every dialect's way in.

    all_context: the caller's own messages must all reach the model (OpenAI's contract: too many is a 400), where
    other clients' history is trimmed to the model's budget."""
    registry = request.app[appkeys.REGISTRY]
    trace_id = request_trace_id(request)
    start = StartRequest(exchange, reply_session(principal), trace_id, key, print_)
    if await registry.attaches(start):
        outcome = await registry.start(start, message_exists=message_exists)  # a replay or double send: free
    else:
        start = evolve(start, exchange=await _fitted(request, exchange, all_context))
        plans = request.app[appkeys.PLANS]
        plan = plans.of(principal.user.plan) if plans is not None else None
        outcome = await _start_new_reply(request, start, message_exists, chat_charge(principal), plan)
    if outcome.reply is not None:
        return outcome.reply, outcome
    # Claimed by an earlier identical request, maybe on another process: follow that reply from its start.
    sources = request.app[appkeys.SOURCES]
    try:
        source, _ = await sources.open(principal.user.id, outcome.message_id, 0, trace_id, expect_soon=True)
    except ApiError as exc:
        if exc.status != 404:
            raise
        raise ApiError(409, "conflict", "this request is still being processed; retry shortly", retry_after_s=1.0) from None
    return source, outcome


async def _fitted(request: web.Request, exchange: Exchange, all_context: bool) -> Exchange:
    """The exchange with the history that fits its model (ADR 22); 400 before anything is charged or stored when even
    the current message does not."""
    app = request.app
    budget = app[appkeys.MODELS].budget(exchange.model, exchange.options)
    try:
        return await fitted(app[appkeys.STORE], exchange, budget, strict=all_context)
    except TooLarge as exc:
        code = "context_length_exceeded" if all_context else "payload_too_large"
        raise ApiError(400, code, str(exc)) from None


def reply_session(principal: Principal) -> str:
    """The session whose one-active-reply rule a new reply joins. A program's calls with one API key run side by
    side (as the OpenAI API allows), so each is a session of its own under the key's."""
    if principal.via == "api_key":
        return f"{principal.session_id}:{new_id()}"
    return principal.session_id


def chat_charge(principal: Principal) -> tuple[str, str]:
    """The rate-limit class and bucket a new reply draws from."""
    if principal.via == "api_key":
        return "api_key", f"key:{principal.api_key_id}"
    if "guest" in principal.user.roles:
        return "guest_chat", f"user:{principal.user.id}"
    return "chat", f"user:{principal.user.id}"


async def _start_new_reply(
    request: web.Request, start: StartRequest, message_exists: bool, charge: tuple[str, str], plan: Plan | None = None,
) -> StartOutcome:
    """New work: the plan's daily budget checked, the chat bucket charged, the token rate reserved, an admission
    slot taken, then start; once the reply ends its tokens are counted against the plan's day."""
    app = request.app
    if app[appkeys.REGISTRY].draining:
        raise ApiError(503, "shutting_down", "the server is shutting down", retry_after_s=5)
    limiter, gate = app[appkeys.LIMITER], app[appkeys.ADMISSION]
    user_id = start.exchange.user_id
    bucket = f"user:{user_id}"
    estimate = app[appkeys.SETTINGS].reply_token_estimate
    budget = app[appkeys.BUDGET]
    await budget.check(user_id, plan)
    await limiter.hit(*charge, plan=plan)
    await limiter.hit("tokens", bucket, estimate)
    try:
        slot = await gate.acquire(user_id, Priority.CRITICAL)
    except BaseException:
        await limiter.adjust("tokens", bucket, -estimate)
        raise

    metrics = app[appkeys.METRICS]

    async def settle(reply: Reply) -> None:
        gate.release(slot)
        metrics.replies_ended.labels(reply.model, reply.end_code).inc()
        report_reply_end(reply.end_code, reply.trace_id, reply.model, reply.message_id)
        for model, fallback_from, reason in reply.fallbacks:
            metrics.fallbacks.labels(model, fallback_from, reason).inc()
        used = sum(reply.usage) if reply.usage is not None else reply.delta_count  # the upstream's count when it gives one
        await limiter.adjust("tokens", bucket, used - estimate)  # refunds what was not used
        if plan is not None and plan.tokens_per_day is not None:
            receipt = reply.receipt()  # the upstream's count, else the estimate (prompt and reply)
            await budget.spend(user_id, receipt.input_tokens + receipt.output_tokens)

    try:
        outcome = await app[appkeys.REGISTRY].start(evolve(start, finalizers=(settle,)), message_exists=message_exists)
    except BaseException:
        gate.release(slot)
        await limiter.adjust("tokens", bucket, -estimate)
        raise
    if outcome.reply is None or outcome.message_id != start.exchange.reply_message_id:
        gate.release(slot)  # lost a race to an identical request and attached to it instead
        await limiter.adjust("tokens", bucket, -estimate)
    else:
        app[appkeys.METRICS].replies_started.inc()
        app[appkeys.METRICS].recent_replies.add(1)
    return outcome


MAX_EVENT_ID = 999_999_999_999  # a Last-Event-ID is an index into a reply's log: never negative, never huge


def _last_event_id(request: web.Request) -> int:
    raw = request.headers.get("Last-Event-ID")
    if raw is None:  # only then: a parsed query is kept on the request for as long as its stream lasts
        raw = request.query.get("lastEventId", "0") if "?" in request.raw_path else "0"
    return whole_number(raw.strip() or "0", "Last-Event-ID", 0, MAX_EVENT_ID)


async def open_resume(request: web.Request, principal: Principal, message_id: str, last_id: int) -> tuple[EventSource, int]:
    """The log to follow for a resume (here, on another process, or rebuilt from the store) and where to start."""
    sources = request.app[appkeys.SOURCES]
    return await sources.open(principal.user.id, message_id, last_id, request_trace_id(request))


async def get_events(request: web.Request) -> web.StreamResponse:
    principal = await require_user(request)
    message_id = path_id(request.match_info["messageId"], "message")
    last_id = _last_event_id(request)
    trace_id = request_trace_id(request)
    source, cursor = await open_resume(request, principal, message_id, last_id)
    if otel.enabled():
        await _link_resume(request, source, message_id)
    if source.finished and cursor >= len(source.events):
        source.close()
        return web.Response(status=204)  # tells an EventSource that this reply has nothing more
    metrics = request.app[appkeys.METRICS]
    if last_id > 0:
        metrics.resumes.inc()
        metrics.recent_resumes.add(1)
    return await stream_events(request, source, cursor, subscriber_options(request), trace_id, metrics,
                               session_id=principal.session_id)


async def _link_resume(request: web.Request, source: EventSource, message_id: str) -> None:
    """The resume's span links to the reply's (here, or produced on another process: its trace id from Redis)."""
    trace_id: str | None = source.trace_id if isinstance(source, Reply) else None
    follower = request.app[appkeys.SOURCES].follower
    if trace_id is None and follower is not None:
        with suppress(Exception):
            trace_id = await follower.trace_of(message_id)
    if trace_id:
        otel.link_resume(request.get(SERVER_SPAN), message_id, trace_id)


async def cancel_stream(request: web.Request) -> web.Response:
    principal = await require_user(request)
    message_id = path_id(request.match_info["messageId"], "message")
    await request.app[appkeys.SOURCES].cancel(principal.user.id, message_id)
    return web.json_response({"messageId": message_id}, status=202)


def add_routes(app: web.Application) -> None:
    app.router.add_post("/api/chat/stream", post_stream)
    app.router.add_get("/api/chat/streams/{messageId}/events", get_events)
    app.router.add_post("/api/chat/streams/{messageId}/cancel", cancel_stream)
