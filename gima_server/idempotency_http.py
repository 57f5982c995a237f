"""Idempotency-Key for JSON write endpoints: same key and body → the stored response; still running → 409."""

from __future__ import annotations

import json
from dataclasses import dataclass

from aiohttp import web

from . import appkeys
from .auth.sessions import authenticate
from .errors import ApiError
from .idempotency import IdempotencyRecord, fingerprint
from .ids import idempotency_key
from .observability.tracing import request_trace_id
from .validation import read_raw

_WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_OWN_HANDLING = ("/api/chat/stream", "/api/auth/")  # the stream routes attach to replies themselves
_OWN_PATHS = frozenset({"/api/chat"})  # the AI SDK's stream route (prefix /api/chat would take /api/chats too)


def _applies(request: web.Request) -> bool:
    return (
        request.method in _WRITES
        and "Idempotency-Key" in request.headers
        and request.path.startswith("/api/")
        and not request.path.startswith(_OWN_HANDLING)
        and request.path not in _OWN_PATHS
    )


@dataclass(frozen=True, slots=True)
class Claim:
    """This request holds the key; its answer is stored when it ends."""

    user_id: str
    key: str


async def begin(request: web.Request) -> tuple[web.Response | None, Claim | None]:
    """Before the handler: (a stored answer to replay, None) or (None, the claim to settle) or (None, None)."""
    if not _applies(request):
        return None, None
    principal = await authenticate(request)
    if principal is None:
        return None, None  # the handler answers 401
    key = idempotency_key(request.headers["Idempotency-Key"])
    raw = await read_raw(request)  # kept on the request: the handler reads the same bytes
    try:
        body = json.loads(raw) if raw else None
    except (ValueError, RecursionError):  # the handler answers 400; the fingerprint takes the bytes
        body = raw.decode(errors="replace")
    mine = IdempotencyRecord(fingerprint(request.method, request.path, {"body": body}), "")
    existing = await request.app[appkeys.IDEMPOTENCY].claim(principal.user.id, key, mine)
    if existing is None:
        return None, Claim(principal.user.id, key)
    if existing.fingerprint != mine.fingerprint:
        raise ApiError(422, "idempotency_key_reused", "this Idempotency-Key was used with a different request")
    if not existing.completed:
        raise ApiError(409, "conflict", "a request with this Idempotency-Key is still in progress", retry_after_s=1.0)
    assert existing.status is not None
    return _replay(request, existing.status, existing.body), None


async def settle(request: web.Request, claim: Claim, response: web.StreamResponse | None, error: BaseException | None) -> None:
    """After the handler: keep a final answer for replays; free the key when retrying is worth it."""
    records = request.app[appkeys.IDEMPOTENCY]
    if isinstance(error, ApiError) and error.status < 500 and error.status != 429:
        body = json.dumps({"error": {"code": error.code, "message": error.message}})
        await records.complete(claim.user_id, claim.key, error.status, body)
    elif error is None and isinstance(response, web.Response) and response.status < 500:
        await records.complete(claim.user_id, claim.key, response.status, response.text if response.body is not None else None)
    else:
        await records.release(claim.user_id, claim.key)


def _replay(request: web.Request, status: int, body: str | None) -> web.Response:
    headers = {"Idempotent-Replayed": "true"}
    if body is None:
        return web.Response(status=status, headers=headers)
    if status >= 400:  # a replayed error names this request's trace, like every error
        error = json.loads(body)
        error["error"]["traceId"] = request_trace_id(request)
        body = json.dumps(error)
    return web.Response(status=status, text=body, content_type="application/json", headers=headers)
