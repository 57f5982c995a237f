"""Strict JSON bodies: an object with only the known fields, each of the declared type."""

from __future__ import annotations

import asyncio
import json
import math
import re
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Mapping, TypeVar

from aiohttp import web

from . import appkeys
from .errors import ApiError, invalid

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Field:
    kind: type | tuple[type, ...]
    required: bool = False
    max_chars: int | None = None
    minimum: int | None = None  # for int fields: the bounds, so no client number becomes a negative index
    maximum: int | None = None


async def read_json(request: web.Request, spec: Mapping[str, Field]) -> dict[str, Any]:
    """Parse and check a JSON object body; any problem is a 400/413/415 that changes nothing."""
    if request.content_type != "application/json":
        raise ApiError(415, "unsupported_media_type", "body must be application/json")
    return check_object(parse_json(await read_raw(request)), spec)


_RAW_BODY: web.RequestKey[bytes] = web.RequestKey("raw_body", bytes)
_BATCH_PATH = re.compile(r"^/api/migration/jobs/[^/]+/batches/[^/]+$")


_CONVERSATION_PATHS = frozenset({"/v1/chat/completions", "/api/chat", "/v1/embeddings"})  # whole conversations, batches


def body_limit(request: web.Request) -> int:
    """The most bytes this route's body may have: migration batches and whole conversations have larger limits."""
    settings = request.app[appkeys.SETTINGS]
    if _BATCH_PATH.match(request.path):
        return settings.migration_max_batch_bytes
    if request.path in _CONVERSATION_PATHS:
        return settings.max_conversation_body_bytes
    return settings.max_body_bytes


async def read_raw(request: web.Request) -> bytes:
    """The body, read once (within the route's byte limit and GIMA_BODY_TIMEOUT_S) and kept on the request,
    so that whatever reads it first (the Idempotency-Key step, the handler) leaves it for the next."""
    cached: bytes | None = request.get(_RAW_BODY)
    if cached is not None:
        return cached
    limit = body_limit(request)
    if request.content_length is not None and request.content_length > limit:
        raise ApiError(413, "payload_too_large", f"the body is at most {limit} bytes")
    content = request.content
    if content.is_eof():
        # All of it arrived with the head (a chat message's body does): no read to time out, no timer to arm.
        body = content.read_nowait(-1)
        if len(body) > limit:
            raise ApiError(413, "payload_too_large", f"the body is at most {limit} bytes")
        request[_RAW_BODY] = body
        return body
    raw = bytearray()

    async def read_all() -> None:
        async for chunk in request.content.iter_chunked(64 * 1024):
            raw.extend(chunk)
            if len(raw) > limit:
                raise ApiError(413, "payload_too_large", f"the body is at most {limit} bytes")

    await read_body(request, read_all)
    request[_RAW_BODY] = body = bytes(raw)
    return body


_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")


def parse_json(raw: bytes | str) -> Any:
    """JSON text to a value, or a 400 saying why: not JSON, nested too deeply for the parser, or a string with
    a lone UTF-16 surrogate (a \\ud800 escape without its pair), which no store or client could encode."""
    try:
        value = json.loads(raw, parse_constant=_not_json, parse_float=_finite)
    except _NotFinite:
        raise invalid("body has a number that is not finite (NaN, Infinity or out of range)") from None
    except (ValueError, UnicodeDecodeError):
        raise invalid("body is not valid JSON") from None
    except RecursionError:
        raise invalid("body is nested too deeply") from None
    probe = raw if isinstance(raw, bytes) else raw.encode("utf-8", "surrogatepass")
    if _SURROGATE_ESCAPE.search(probe) and not _encodable(value):
        raise invalid("body has a string with an unpaired UTF-16 surrogate")
    return value


class _NotFinite(ValueError):
    pass


def _not_json(constant: str) -> float:
    raise _NotFinite(constant)  # NaN, Infinity, -Infinity: Python's json reads them, JSON has no such thing


def _finite(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):  # 1e400
        raise _NotFinite(text)
    return number


def _encodable(value: Any) -> bool:
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                return False
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return True


async def read_body(request: web.Request, read: Callable[[], Awaitable[T]]) -> T:
    """A body that has not arrived within GIMA_BODY_TIMEOUT_S is a 408 (a slow-body client holds nothing for long)."""
    try:
        async with asyncio.timeout(request.app[appkeys.SETTINGS].body_timeout_s):
            return await read()
    except TimeoutError:
        raise ApiError(408, "request_timeout", "the request body did not arrive in time",
                       headers={"Connection": "close"}) from None


def check_object(body: object, spec: Mapping[str, Field]) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise invalid("body must be a JSON object")
    unknown = sorted(set(body) - set(spec))
    if unknown:
        raise invalid(f"unknown field(s): {', '.join(unknown)}")
    for name, field in spec.items():
        if name not in body or body[name] is None:
            if field.required:
                raise invalid(f"field '{name}' is required")
            continue
        value = body[name]
        # bool is an int in Python; a JSON true must not pass as a number.
        if not isinstance(value, field.kind) or (isinstance(value, bool) and bool not in _as_tuple(field.kind)):
            raise invalid(f"field '{name}' has the wrong type")
        if field.max_chars is not None and isinstance(value, str) and len(value) > field.max_chars:
            raise invalid(f"field '{name}' is longer than {field.max_chars} characters")
        if isinstance(value, str) and "\x00" in value:
            raise invalid(f"field '{name}' contains a NUL character")
        if isinstance(value, int) and not _within(value, field.minimum, field.maximum):
            raise invalid(f"field '{name}' must be a whole number from {field.minimum} to {field.maximum}")
    return {name: body.get(name) for name in spec}


def _within(value: int, low: int | None, high: int | None) -> bool:
    return (low is None or value >= low) and (high is None or value <= high)


def whole_number(raw: str, name: str, low: int, high: int) -> int:
    """A client's number from a header, query or path: ASCII digits only (str.isdigit also takes '²' and
    '٣'), within [low, high]; anything else is a 400 naming the field and its range."""
    text = raw.strip()
    if not (text.isascii() and text.isdigit() and len(text) <= len(str(high))) or not low <= int(text) <= high:
        raise invalid(f"{name} must be a whole number from {low} to {high}")
    return int(text)


def _as_tuple(kind: type | tuple[type, ...]) -> tuple[type, ...]:
    return kind if isinstance(kind, tuple) else (kind,)
