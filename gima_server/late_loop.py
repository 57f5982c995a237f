"""A deadline for another service's answer that does not count the time this process's own event loop was late.

asyncio.timeout measures wall time, and its timer runs as soon as the loop gets to it: after a stall of the loop
(a burst of starts, a collector pass) the timer runs before the answer that arrived meanwhile has been read, and
the service is blamed for the process's own lateness (bench.paced with Redis on a saturated core: "Redis
unavailable (TimeoutError)" while Redis answered every command in a millisecond, and every running reply resent).
"""

from __future__ import annotations

import asyncio
from types import TracebackType

# A timer that runs this much after its time was held up by the loop, not by the service (a free loop runs its
# timers within a millisecond or two).
LATE_S = 0.01


class responsive_timeout:  # noqa: N801 (used as asyncio.timeout is)
    """Like asyncio.timeout(delay_s), except that when the deadline is checked late, the wait goes on for as long
    again as the loop was late (the answer may be waiting, unread), until a check runs on time or at_most_s has
    passed in all: a service that is really slow still times out, after at most at_most_s on a saturated loop.
    A class, not a generator: it wraps every Redis read (a generator-based one cost 4 µs a pipelined command)."""

    __slots__ = ("_delay_s", "_at_most_s", "_timeout", "_handle", "_loop", "_started")

    def __init__(self, delay_s: float, at_most_s: float) -> None:
        self._delay_s = delay_s
        self._at_most_s = at_most_s

    async def __aenter__(self) -> None:
        self._timeout = asyncio.timeout(None)
        await self._timeout.__aenter__()
        loop = self._loop = asyncio.get_running_loop()
        self._started = loop.time()
        due = self._started + self._delay_s
        self._handle = loop.call_at(due, self._check, due)

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        self._handle.cancel()
        await self._timeout.__aexit__(exc_type, exc, tb)  # raises TimeoutError for a cancel of its own

    def _check(self, due: float) -> None:
        now = self._loop.time()
        late = now - due
        if late > LATE_S and now + late < self._started + self._at_most_s:
            self._handle = self._loop.call_at(now + late, self._check, now + late)
        else:
            self._timeout.reschedule(now)  # expires at once: raises TimeoutError out of the block
