"""Identifiers: server-made ids and the shape every client-sent id must have."""

from __future__ import annotations

import os
import re
import time

from .errors import ApiError, invalid

_ID = re.compile(r"^[A-Za-z0-9_\-]{1,64}$")
_IDEMPOTENCY_KEY = re.compile(r"^[\x21-\x7e]{1,128}$")


class _RandomHex:
    """Random hex digits from os.urandom, read for many ids at once: each read is a getrandom() system call (~1 µs on
    a virtual machine), and a reply's start makes four ids. The same bytes, taken in turn; list.pop is atomic, so
    threads never share a part, and a forked child forgets what its parent read (it would repeat its ids)."""

    __slots__ = ("_nbytes", "_parts")

    def __init__(self, nbytes: int) -> None:
        self._nbytes = nbytes
        self._parts: list[str] = []

    def take(self) -> str:
        try:
            return self._parts.pop()
        except IndexError:
            width = self._nbytes * 2
            block = os.urandom(self._nbytes * _IDS_A_READ).hex()
            self._parts = [block[i:i + width] for i in range(width, len(block), width)]
            return block[:width]

    def forget(self) -> None:
        self._parts = []


_IDS_A_READ = 64
_RANDOM_128 = _RandomHex(16)
_RANDOM_80 = _RandomHex(10)
os.register_at_fork(after_in_child=_RANDOM_128.forget)
os.register_at_fork(after_in_child=_RANDOM_80.forget)


def new_id() -> str:
    # 128 random bits as 32 hex digits, as uuid4().hex reads, without making a UUID (a few per reply: ~1 %)
    return _RANDOM_128.take()


def new_ordered_id() -> str:
    """The time it was made (milliseconds, 12 hex digits) and 80 random bits: ids made later sort later, so a row
    keyed by one lands at the end of its index instead of on a random page (a group commit of 64 exchanges wrote
    67 µs an exchange with random message ids, 31 µs with these: every random key dirtied a page of its own)."""
    return f"{time.time_ns() // 1_000_000:012x}{_RANDOM_80.take()}"


def new_chat_id() -> str:
    """A new chat's id, ordered by time, so that another process can also tell a chat made a moment ago, whose
    first exchange may not be stored yet, from one never made (chat_id_age_s)."""
    return new_ordered_id()


def new_message_id() -> str:
    """A message's id made by the server (a client may name its own: any valid id)."""
    return new_ordered_id()


def chat_id_age_s(chat_id: str) -> float | None:
    """How long ago new_chat_id made this id, or None when it cannot have (another shape, or a time that is not
    the recent past: an id of random digits reads as a date centuries away)."""
    if len(chat_id) != 32:
        return None
    try:
        made_ms = int(chat_id[:12], 16)
    except ValueError:
        return None
    age_s = time.time() - made_ms / 1000
    return age_s if -_CLOCK_SKEW_S <= age_s <= 3600 else None


_CLOCK_SKEW_S = 5.0  # processes on other machines: their clocks may run a little ahead of ours


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
