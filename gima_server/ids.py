"""Identifiers: server-made ids and the shape every client-sent id must have."""

from __future__ import annotations

import os
import re

from .errors import ApiError, invalid

_ID = re.compile(r"^[A-Za-z0-9_\-]{1,64}$")
_IDEMPOTENCY_KEY = re.compile(r"^[\x21-\x7e]{1,128}$")


def new_id() -> str:
    # 128 random bits as 32 hex digits, as uuid4().hex reads, without making a UUID (a few per reply: ~1 %)
    return os.urandom(16).hex()


def is_valid_id(value: str) -> bool:
    return bool(_ID.match(value))


def body_id(value: str, field: str) -> str:
    if not is_valid_id(value):
        raise invalid(f"field '{field}' must be 1-64 characters of A-Z a-z 0-9 _ -")
    return value


def path_id(value: str, what: str) -> str:
    """An id from the URL: a malformed one cannot exist, so it is a 404 like any unknown id."""
    if not is_valid_id(value):
        raise ApiError(404, "not_found", f"{what} not found")
    return value


def idempotency_key(value: str) -> str:
    if not _IDEMPOTENCY_KEY.match(value):
        raise invalid("Idempotency-Key must be 1-128 visible ASCII characters")
    return value
