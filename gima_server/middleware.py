"""The two middlewares, composed of the capabilities' own functions.

Two frames instead of eight: each middleware frame stays alive for as long as its request does, and an open
SSE subscriber is a request that lasts minutes, so fewer frames is less memory per subscriber (bench/load.py).
"""

from __future__ import annotations

import time

from aiohttp import web
from aiohttp.typedefs import Handler

from . import idempotency_http
from .errors import render_exception
from .limits.charge import charge_route
from .observability.http_metrics import STARTED_AT, record_request
from .observability.tracing import current_trace_id, request_trace_id
from .security import check_origin, preflight_response


@web.middleware
async def outer_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Trace id for the request's logs, its timing and metrics, and the JSON error for anything that fails."""
    token = current_trace_id.set(request_trace_id(request))
    request[STARTED_AT] = started = time.perf_counter()
    try:
        try:
            response = await handler(request)
        except Exception as exc:
            response = render_exception(request, exc)
        record_request(request, response, time.perf_counter() - started)
        return response
    finally:
        current_trace_id.reset(token)


@web.middleware
async def policy_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """What a request must pass before its handler: CORS preflight, same-origin check, Idempotency-Key, rate limit."""
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
        raise
    if claim is not None:
        await idempotency_http.settle(request, claim, response, None)
    return response
