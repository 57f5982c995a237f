"""Checkpoints of many replies written as one statement, and sign-in reads asked together as one (group commit
and batched lookups for PostgreSQL, where they pay: ADR 18).

A checkpoint is small and frequent (every 32 deltas of every running reply). One at a time, a thousand running
replies send thousands of statements a second, each a round trip and a commit. Here the checkpoints that arrive
while a batch is being written wait together and go in the next one: one `UPDATE … FROM unnest(…)` per batch.
A newer checkpoint of the same reply replaces the older one still waiting (its text includes the older's).
"""

from __future__ import annotations

import asyncio
from typing import Any, Awaitable, Callable, Generic, TypeVar

T = TypeVar("T")

# (message id, content, fence) in; the ids the statement updated out.
WriteBatch = Callable[[list[tuple[str, str, int]]], Awaitable[set[str]]]


def _fail(groups: list[list[asyncio.Future[Any]]], exc: Exception) -> None:
    for futures in groups:
        for future in futures:
            if not future.done():
                future.set_exception(exc)


class CheckpointBatcher:
    def __init__(self, write: WriteBatch, max_rows: int = 500) -> None:
        self._write = write
        self._max_rows = max_rows
        # Bound: one entry per running reply with a checkpoint not yet written.
        self._waiting: dict[str, tuple[str, int, list[asyncio.Future[bool]]]] = {}
        self._writer: asyncio.Task[None] | None = None

    def submit(self, message_id: str, content: str, fence: int) -> asyncio.Future[bool]:
        done: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        earlier = self._waiting.get(message_id)
        if earlier is None:
            self._waiting[message_id] = (content, fence, [done])
        elif earlier[1] > fence:  # a newer producer's text waits already: it stays
            earlier[2].append(done)
        else:
            self._waiting[message_id] = (content, fence, [*earlier[2], done])
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._drain())
        return done

    async def _drain(self) -> None:
        while self._waiting:
            ids = list(self._waiting)[: self._max_rows]
            batch = {message_id: self._waiting.pop(message_id) for message_id in ids}
            try:
                written = await self._write([(m, content, fence) for m, (content, fence, _) in batch.items()])
            except Exception as exc:  # a fault fails this batch's callers; each decides (checkpoints are best effort)
                _fail([futures for _, _, futures in batch.values()], exc)
                continue
            for message_id, (_, _, futures) in batch.items():
                for future in futures:
                    if not future.done():
                        future.set_result(message_id in written)

    async def close(self) -> None:
        """Let the checkpoints already submitted be written (or fail) before the connections go."""
        if self._writer is not None:
            await asyncio.wait({self._writer})


class LookupBatcher(Generic[T]):
    """Reads by key that arrive while one is on its way go together in the next (`… WHERE id = ANY($1)`): a
    thousand sign-ins at once are a few statements, not a thousand round trips queued for the pool."""

    def __init__(self, fetch: Callable[[list[str]], Awaitable[dict[str, T]]], max_keys: int = 500) -> None:
        self._fetch = fetch
        self._max_keys = max_keys
        # Bound: one entry per distinct key asked for and not yet answered.
        self._waiting: dict[str, list[asyncio.Future[T | None]]] = {}
        self._reader: asyncio.Task[None] | None = None

    def get(self, key: str) -> asyncio.Future[T | None]:
        done: asyncio.Future[T | None] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(key, []).append(done)
        if self._reader is None or self._reader.done():
            self._reader = asyncio.create_task(self._drain())
        return done

    async def _drain(self) -> None:
        while self._waiting:
            keys = list(self._waiting)[: self._max_keys]
            batch = {key: self._waiting.pop(key) for key in keys}
            try:
                found = await self._fetch(keys)
            except Exception as exc:
                _fail(list(batch.values()), exc)
                continue
            for key, futures in batch.items():
                for future in futures:
                    if not future.done():
                        future.set_result(found.get(key))

    async def close(self) -> None:
        if self._reader is not None:
            await asyncio.wait({self._reader})
