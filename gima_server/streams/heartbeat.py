"""One heartbeat for every open SSE stream of the process, instead of a ping task (and timer) per stream.

A stream that wrote anything within the heartbeat interval needs no ping; the others get `: ping` on the
next tick. Ticks come every third of the interval, so no stream goes longer than the interval without a byte.
A stream whose transport is backed up is skipped (its own send timeout deals with it).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Protocol

log = logging.getLogger("gima.heartbeat")
PING = b": ping\n\n"


class Pingable(Protocol):
    last_write: float

    def can_write_now(self, size: int) -> bool: ...

    async def write(self, data: bytes) -> None: ...

    def lost(self) -> None:
        """A ping failed: the client is gone."""
        ...


class Heartbeat:
    def __init__(self, interval_s: float) -> None:
        self.interval_s = interval_s
        self._streams: dict[Pingable, None] = {}  # bound: the open streams; each leaves as it ends (or its ping fails)

    def add(self, stream: Pingable) -> None:
        self._streams[stream] = None

    def discard(self, stream: Pingable) -> None:
        self._streams.pop(stream, None)

    def __len__(self) -> int:
        return len(self._streams)

    async def run(self) -> None:
        """Until cancelled."""
        tick_s = self.interval_s / 3
        while True:
            await asyncio.sleep(tick_s)
            await self.tick(time.monotonic() - (self.interval_s - tick_s))

    async def tick(self, quiet_since: float) -> int:
        """Ping every stream that has written nothing since quiet_since; return how many were pinged."""
        pinged = 0
        for stream in list(self._streams):
            if stream.last_write > quiet_since or not stream.can_write_now(len(PING)):
                continue
            try:
                await stream.write(PING)  # below the transport's high-water mark: returns without waiting
            except (ConnectionResetError, RuntimeError):  # gone, or already ended
                self.discard(stream)
                stream.lost()  # an idle stream learns it now, not at its reply's next event
                continue
            stream.last_write = time.monotonic()
            pinged += 1
        return pinged
