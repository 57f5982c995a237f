"""Admission for scarce work (replies): a bounded, prioritised wait; and a load monitor others can ask."""

from __future__ import annotations

import asyncio
import heapq
import itertools
import os
import time
from collections import Counter
from dataclasses import dataclass, field
from enum import IntEnum

from .errors import ApiError
from .observability.metrics import Metrics


class Priority(IntEnum):
    CRITICAL = 0  # chat replies
    LOW = 9  # migration and other background jobs


def default_max_active() -> int:
    return 512 * (os.cpu_count() or 1)


@dataclass(order=True)
class _Waiter:
    priority: int
    seq: int
    user_id: str = field(compare=False)
    future: asyncio.Future[None] = field(compare=False)


@dataclass(frozen=True, slots=True)
class Slot:
    user_id: str
    priority: Priority


class AdmissionGate:
    """At most max_active holders, max_per_user per user; others wait in priority order, boundedly.

    Low-priority work never takes the last `reserve` slots, so background jobs cannot crowd out chat.
    """

    def __init__(
        self, max_active: int, max_per_user: int, max_queue: int, max_wait_s: float, metrics: Metrics
    ) -> None:
        self.max_active = max_active
        self._max_per_user = max_per_user
        self._max_queue = max_queue
        self._max_wait_s = max_wait_s
        self._reserve = max_active // 10  # kept for chat (none when there are fewer than 10 slots)
        self._metrics = metrics
        self.active = 0
        self._per_user: Counter[str] = Counter()  # bound: users holding a slot; a count at zero is deleted
        self._waiters: list[_Waiter] = []  # bound: max_queue; a waiter leaves when served or past max_wait_s
        self._seq = itertools.count()

    @property
    def queue_depth(self) -> int:
        return len(self._waiters)

    def _room(self, priority: Priority) -> bool:
        ceiling = self.max_active if priority == Priority.CRITICAL else self.max_active - self._reserve
        return self.active < ceiling

    def _take(self, user_id: str, priority: Priority) -> Slot:
        self.active += 1
        self._per_user[user_id] += 1
        self._metrics.active_replies.set(self.active)
        return Slot(user_id, priority)

    def _reject(self, reason: str, retry_after_s: float) -> ApiError:
        self._metrics.admission_rejected.labels(reason).inc()
        return ApiError(503, "server_busy", f"the server is busy ({reason}); retry shortly", retry_after_s=retry_after_s)

    async def acquire(self, user_id: str, priority: Priority = Priority.CRITICAL) -> Slot:
        if self._per_user[user_id] >= self._max_per_user:
            self._metrics.admission_rejected.labels("per_user").inc()
            raise ApiError(429, "stream_busy", "too many replies running for this account", retry_after_s=1.0)
        if self._room(priority) and not any(w.priority <= priority for w in self._waiters):
            return self._take(user_id, priority)
        if len(self._waiters) >= self._max_queue:
            raise self._reject("queue_full", 1.0)
        waiter = _Waiter(int(priority), next(self._seq), user_id, asyncio.get_running_loop().create_future())
        heapq.heappush(self._waiters, waiter)
        self._metrics.admission_queue.set(len(self._waiters))
        started = time.monotonic()
        admitted = False
        try:
            async with asyncio.timeout(self._max_wait_s):
                await waiter.future
            admitted = True
        except TimeoutError:
            admitted = waiter.future.done() and not waiter.future.cancelled()  # handed a slot at the deadline
            if not admitted:
                raise self._reject("wait_timeout", 1.0) from None
        finally:
            self._metrics.admission_wait.observe(time.monotonic() - started)
            if not admitted:
                self._remove(waiter)
                if waiter.future.done() and not waiter.future.cancelled():
                    self.release(Slot(user_id, priority))  # cancelled just after being handed a slot: give it back
        return Slot(user_id, priority)

    def _remove(self, waiter: _Waiter) -> None:
        if waiter in self._waiters:
            self._waiters.remove(waiter)
            heapq.heapify(self._waiters)
            self._metrics.admission_queue.set(len(self._waiters))

    def release(self, slot: Slot) -> None:
        self.active -= 1
        self._per_user[slot.user_id] -= 1
        if self._per_user[slot.user_id] <= 0:
            del self._per_user[slot.user_id]
        self._wake()
        self._metrics.active_replies.set(self.active)

    def _wake(self) -> None:
        while self._waiters and self._room(Priority(self._waiters[0].priority)):
            waiter = heapq.heappop(self._waiters)
            if waiter.future.done():
                continue
            self.active += 1  # handed over: the waiter owns the slot as soon as its future resolves
            self._per_user[waiter.user_id] += 1
            waiter.future.set_result(None)
        self._metrics.admission_queue.set(len(self._waiters))


class LoadMonitor:
    """Samples event-loop lag; "under pressure" when the loop lags or replies queue for admission."""

    def __init__(self, gate: AdmissionGate, metrics: Metrics, lag_threshold_s: float = 0.1, interval_s: float = 0.25) -> None:
        self._gate = gate
        self._metrics = metrics
        self._lag_threshold_s = lag_threshold_s
        self._interval_s = interval_s
        self.lag_s = 0.0

    def under_pressure(self) -> bool:
        return (
            self.lag_s > self._lag_threshold_s
            or self._gate.queue_depth > 0
            or self._gate.active >= 0.8 * self._gate.max_active
        )

    def snapshot(self) -> dict[str, float | int | bool]:
        return {
            "loopLagMs": round(self.lag_s * 1000, 1),
            "activeReplies": self._gate.active,
            "queueDepth": self._gate.queue_depth,
            "underPressure": self.under_pressure(),
        }

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            started = loop.time()
            await asyncio.sleep(self._interval_s)
            lag = max(0.0, loop.time() - started - self._interval_s)
            self.lag_s = 0.7 * self.lag_s + 0.3 * lag  # smoothed, so one slow tick is not "pressure"
            self._metrics.loop_lag.set(self.lag_s)
