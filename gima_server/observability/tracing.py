"""Trace ids: taken from traceparent / X-Request-Id or made anew, kept in a contextvar for logs and tasks."""

from __future__ import annotations

import contextvars
import hashlib
import random
import re
import secrets

from aiohttp import web

current_trace_id: contextvars.ContextVar[str] = contextvars.ContextVar("trace_id", default="-")

TRACE_ID_KEY: web.RequestKey[str] = web.RequestKey("trace_id", str)
_TRACEPARENT = re.compile(r"^[0-9a-f]{2}-([0-9a-f]{32})-[0-9a-f]{16}-[0-9a-f]{2}$")
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._\-]{1,64}$")
_TRACE_HEX = re.compile(r"^[0-9a-f]{32}$")


def trace_id_from_headers(traceparent: str | None, request_id: str | None) -> str:
    if traceparent:
        match = _TRACEPARENT.match(traceparent.strip().lower())
        if match and match.group(1) != "0" * 32:
            return match.group(1)
    if request_id and _REQUEST_ID.match(request_id):
        return request_id
    # Not a secret, only unique: the PRNG (a uuid4 read os.urandom per request; ~1 % of a reply's start).
    return f"{random.getrandbits(128) or 1:032x}"


def request_trace_id(request: web.BaseRequest) -> str:
    trace_id = request.get(TRACE_ID_KEY)
    if trace_id is None:
        trace_id = trace_id_from_headers(request.headers.get("traceparent"), request.headers.get("X-Request-Id"))
        request[TRACE_ID_KEY] = trace_id
    return trace_id


async def add_trace_header(request: web.Request, response: web.StreamResponse) -> None:
    """on_response_prepare hook: every response, streamed or not, error or not, carries X-Trace-Id."""
    response.headers["X-Trace-Id"] = request_trace_id(request)


def outgoing_traceparent(trace_id: str) -> str:
    """A W3C traceparent for calls this server makes upstream, continuing the request's trace."""
    trace = trace_id if _TRACE_HEX.match(trace_id) else hashlib.sha256(trace_id.encode()).hexdigest()[:32]
    return f"00-{trace}-{secrets.token_hex(8)}-01"
