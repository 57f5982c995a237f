"""Idempotency-Key for JSON write endpoints: same key and body → the stored response; still running → 409."""

from __future__ import annotations

import json

from aiohttp import web
from aiohttp.typedefs import Handler

from . import appkeys
from .auth.sessions import authenticate
from .errors import ApiError
from .idempotency import IdempotencyRecord, fingerprint
from .ids import idempotency_key

_WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_OWN_HANDLING = ("/api/chat/stream", "/api/auth/")  # the stream route attaches to replies itself


def _applies(request: web.Request) -> bool:
    return (
        request.method in _WRITES
        and "Idempotency-Key" in request.headers
        and request.path.startswith("/api/")
        and not request.path.startswith(_OWN_HANDLING)
    )


@web.middleware
async def idempotency_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if not _applies(request):
        return await handler(request)
    principal = await authenticate(request)
    if principal is None:
        return await handler(request)  # the handler answers 401
    key = idempotency_key(request.headers["Idempotency-Key"])
    raw = await request.read()
    try:
        body = json.loads(raw) if raw else None
    except ValueError:
        body = raw.decode(errors="replace")
    records = request.app[appkeys.IDEMPOTENCY]
    mine = IdempotencyRecord(fingerprint(request.method, request.path, {"body": body}), "")
    existing = await records.claim(principal.user.id, key, mine)
    if existing is not None:
        if existing.fingerprint != mine.fingerprint:
            raise ApiError(422, "idempotency_key_reused", "this Idempotency-Key was used with a different request")
        if not existing.completed:
            raise ApiError(409, "conflict", "a request with this Idempotency-Key is still in progress", retry_after_s=1.0)
        assert existing.status is not None
        return _replay(existing.status, existing.body)
    try:
        response = await handler(request)
    except ApiError as exc:
        if exc.status >= 500 or exc.status == 429:
            await records.release(principal.user.id, key)  # worth retrying: not a final answer
        else:
            error = json.dumps({"error": {"code": exc.code, "message": exc.message}})
            await records.complete(principal.user.id, key, exc.status, error)
        raise
    except BaseException:
        await records.release(principal.user.id, key)
        raise
    if isinstance(response, web.Response) and response.status < 500:
        text = response.text if response.body is not None else None
        await records.complete(principal.user.id, key, response.status, text)
    else:
        await records.release(principal.user.id, key)
    return response


def _replay(status: int, body: str | None) -> web.Response:
    headers = {"Idempotent-Replayed": "true"}
    if body is None:
        return web.Response(status=status, headers=headers)
    return web.Response(status=status, text=body, content_type="application/json", headers=headers)
