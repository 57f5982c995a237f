"""The one middleware, composed of the capabilities' own functions.

One frame instead of eight: each middleware frame stays alive for as long as its request does, and an open
SSE subscriber is a request that lasts minutes, so fewer frames is less memory per subscriber (bench/paced.py,
idle phase). aiohttp-session's middleware is folded in here for the same reason; its storage and
`get_session` are used as they are.
"""

from __future__ import annotations

import time
import warnings
from typing import Any, cast

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware
from aiohttp.web_exceptions import NotAppKeyWarning
from aiohttp_session import SESSION_KEY, STORAGE_KEY, AbstractStorage, Session

from . import idempotency_http
from .errors import render_exception
from .limits.charge import charge_route
from .observability import otel
from .observability.http_metrics import STARTED_AT, record_request
from .observability.tracing import current_trace_id, request_trace_id
from .security import check_origin, preflight_response

SERVER_SPAN: web.RequestKey[Any] = web.RequestKey("server_span", object)  # the request's span (tracing on)

# aiohttp-session keys its state with plain strings; setting its storage key here warns the same way.
warnings.filterwarnings("ignore", category=NotAppKeyWarning, module=__name__)


def gima_middleware(session_storage: AbstractStorage, traced: bool = False) -> Middleware:
    """The middleware; traced (OpenTelemetry on): inside a server span whose trace id is the X-Trace-Id. Chosen
    once, so that without tracing a request pays nothing for it (not even a frame)."""
    plain = _plain_middleware(session_storage)
    if not traced:
        return plain

    @web.middleware
    async def traced_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        resource = request.match_info.route.resource
        route = resource.canonical if resource is not None else "unmatched"
        attributes = {"http.request.method": request.method, "http.route": route}
        with otel.server_span(f"{request.method} {route}", request_trace_id(request),
                              request.headers.get("traceparent"), attributes) as span:
            request[SERVER_SPAN] = span
            response = await plain(request, handler)
            span.set_attribute("http.response.status_code", response.status)
            return response

    return traced_middleware


def _plain_middleware(session_storage: AbstractStorage) -> Middleware:
    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        """Trace id, timing and metrics, the JSON error for anything that fails; then what a request must pass
        before its handler (CORS preflight, same-origin check, Idempotency-Key, rate limit); the cookie session
        saved after it."""
        token = current_trace_id.set(request_trace_id(request))
        request[STARTED_AT] = started = time.perf_counter()
        request[STORAGE_KEY] = session_storage
        try:
            try:
                preflight = preflight_response(request)
                if preflight is not None:
                    return preflight
                await check_origin(request)
                replay, claim = await idempotency_http.begin(request)
                if replay is not None:
                    return replay  # before the limiter: a replay is not new work and costs nothing
                try:
                    await charge_route(request)
                    response = await handler(request)
                except BaseException as exc:
                    if claim is not None:
                        await idempotency_http.settle(request, claim, None, exc)
                    if isinstance(exc, web.HTTPException):
                        await _save_session(request, exc, session_storage)
                    raise
                if claim is not None:
                    await idempotency_http.settle(request, claim, response, None)
                await _save_session(request, response, session_storage)
            except Exception as exc:
                response = render_exception(request, exc)
            record_request(request, response, time.perf_counter() - started)
            return response
        finally:
            current_trace_id.reset(token)

    return middleware


async def _save_session(request: web.Request, response: web.StreamResponse, storage: AbstractStorage) -> None:
    """aiohttp-session's rule: a changed session is written into a response that has not been sent yet."""
    if not isinstance(response, (web.Response, web.HTTPException)):
        return  # a stream or a WebSocket: its headers are gone
    session = cast("Session | None", request.get(SESSION_KEY))
    if session is None or not session._changed:
        return
    if response.prepared:
        raise RuntimeError("Cannot save session data into prepared response")
    await storage.save_session(request, response, session)
