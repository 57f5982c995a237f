"""The low-priority lane that imports queued batches: only when the user is not chatting, the server is not
under pressure, the window is open and there is capacity; otherwise the job shows paused with the reason."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable

from ..admission import AdmissionGate, Priority
from ..background import stop_tasks
from ..errors import ApiError
from ..locks import LocalLocks, Locks
from .model import BatchLimits, MigrationJob, parse_batch
from .store import MigrationStore

log = logging.getLogger("gima.migration")

POLL_AFTER_MS = {"running": 1000, "queued": 2000, "paused": 5000, "done": 0, "failed": 0}
POLL_AFTER_CHAT_MS = 10_000  # the user is chatting: come back later


@dataclass(frozen=True, slots=True)
class LaneSettings:
    max_concurrent: int = 2
    window: str = ""  # "HH:MM-HH:MM" in UTC; empty: always open
    retries: int = 3
    retry_base_s: float = 0.2
    tick_s: float = 0.2


def window_open(window: str, now_s: float) -> bool:
    """Whether UTC time now_s falls inside "HH:MM-HH:MM" (which may wrap past midnight); empty means always."""
    if not window:
        return True
    start, end = (int(t[:2]) * 60 + int(t[3:]) for t in window.split("-"))
    minute = int(now_s // 60) % (24 * 60)
    return start <= minute < end if start <= end else minute >= start or minute < end


def valid_window(window: str) -> bool:
    if not window:
        return True
    parts = window.split("-")
    return len(parts) == 2 and all(len(p) == 5 and p[2] == ":" and p[:2].isdigit() and p[3:].isdigit()
                                   and int(p[:2]) < 24 and int(p[3:]) < 60 for p in parts)


class MigrationLane:
    def __init__(
        self,
        store: MigrationStore,
        gate: AdmissionGate,
        user_streaming: Callable[[str], bool],
        under_pressure: Callable[[], bool],
        settings: LaneSettings,
        limits: BatchLimits,
        locks: Locks | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._gate = gate
        self._user_streaming = user_streaming
        self._under_pressure = under_pressure
        self._settings = settings
        self._limits = limits
        self._clock = clock
        self._locks: Locks = locks or LocalLocks()
        self.jobs: dict[str, MigrationJob] = {}
        self._working: dict[str, asyncio.Task[None]] = {}
        self._wake = asyncio.Event()
        # Bounds: jobs holds unfinished jobs (a finished one leaves at the next turn), _working at most
        # max_concurrent, _next_poll an entry per unfinished job polled (it leaves with its job).
        self._next_poll: dict[str, float] = {}
        # Batches accepted by a request and not yet stored, per job (an entry leaves at zero).
        self._receiving: dict[str, int] = {}

    async def load(self) -> None:
        for job in await self._store.unfinished_migration_jobs():
            self.jobs[job.id] = job

    def track(self, job: MigrationJob) -> None:
        tracked = self.jobs.get(job.id)
        if tracked is None:
            self.jobs[job.id] = job
        elif tracked is not job:
            tracked.adopt(job)  # one object per job: a batch being imported holds it
        self._wake.set()

    @contextmanager
    def receiving(self, job_id: str) -> Iterator[None]:
        """Around storing one accepted batch: the job is not finished while a batch it accepted is on its way."""
        self._receiving[job_id] = self._receiving.get(job_id, 0) + 1
        try:
            yield
        finally:
            if self._receiving[job_id] == 1:
                del self._receiving[job_id]
            else:
                self._receiving[job_id] -= 1

    def poll_wait_s(self, job_id: str) -> float:
        """How much sooner than pollAfterMs this poll comes (0: it is on time)."""
        return max(0.0, self._next_poll.get(job_id, 0.0) - time.monotonic())

    def polled(self, job: MigrationJob) -> None:
        if job.status in ("done", "failed"):
            self._next_poll.pop(job.id, None)  # nothing more to poll for
            return
        # A little slack, so a client that waits exactly pollAfterMs is never refused.
        self._next_poll[job.id] = time.monotonic() + self.poll_after_ms(job) / 1000 * 0.9

    def poll_after_ms(self, job: MigrationJob) -> int:
        if job.status == "paused" and job.paused_reason == "chat_streaming":
            return POLL_AFTER_CHAT_MS
        return POLL_AFTER_MS[job.status]

    def _blocked(self, job: MigrationJob) -> str | None:
        if self._user_streaming(job.user_id):
            return "chat_streaming"
        if self._under_pressure():
            return "load"
        if not window_open(self._settings.window, self._clock()):
            return "window"
        if len(self._working) >= self._settings.max_concurrent:
            return "capacity"
        return None

    async def run(self) -> None:
        """Until cancelled: each turn, start one batch for every job that may run now, and mark the rest."""
        try:
            while True:
                await self._turn()
                try:
                    async with asyncio.timeout(self._settings.tick_s):
                        await self._wake.wait()
                except TimeoutError:
                    pass
                self._wake.clear()
        finally:
            await stop_tasks(self._working.values(), patience_s=2.0)

    async def _turn(self) -> None:
        for job in list(self.jobs.values()):
            if job.id in self._working:
                continue
            stored = await self._store.get_migration_job(job.user_id, job.id)  # other processes work on it too
            if stored is not None:
                job.adopt(stored)
            if stored is None or job.finished:
                self.jobs.pop(job.id, None)
                self._next_poll.pop(job.id, None)
                continue
            # Read before counting: a batch and the completion may both arrive while the count is on its way.
            finishing = job.complete_requested and job.id not in self._receiving
            pending = await self._store.pending_migration_batches(job.id)
            if not pending:
                await self._set(job, "done" if finishing else "queued", None)
                continue
            reason = self._blocked(job)
            if reason is not None:
                await self._set(job, "paused", reason)
                continue
            await self._set(job, "running", None)
            self._working[job.id] = asyncio.create_task(self._work(job))

    async def _set(self, job: MigrationJob, status: str, reason: str | None) -> None:
        if (job.status, job.paused_reason) != (status, reason):
            job.status, job.paused_reason = status, reason
            stored = await self._store.save_migration_state(job)
            if stored is not None:
                job.adopt(stored)  # finished elsewhere meanwhile: that stays, and this lane lets go of it

    async def _work(self, job: MigrationJob) -> None:
        lease = await self._locks.try_acquire(f"migration:{job.id}", 120.0)  # one process per job at a time
        try:
            if lease is not None:
                batch = await self._store.next_migration_batch(job.id)
                if batch is not None:
                    await self._import(job, *batch)
        finally:
            if lease is not None:
                await self._locks.release(lease)
                self._wake.set()  # the next batch now; while another process holds the job, the next tick
            del self._working[job.id]

    async def _import(self, job: MigrationJob, seq: int, payload: str) -> None:
        try:
            slot = await self._gate.acquire(f"migration:{job.user_id}", Priority.LOW)
        except ApiError:
            await self._set(job, "paused", "load")  # no slot for background work now: chat comes first
            return
        try:
            for attempt in range(self._settings.retries + 1):
                try:
                    conversations = parse_batch(json.loads(payload), self._limits)
                    imported, skipped = await self._store.import_migration_batch(job, seq, conversations)
                    log.info("imported batch", extra={"job": job.id, "seq": seq, "imported": imported, "skipped": skipped})
                    return
                except Exception as exc:
                    if attempt == self._settings.retries:
                        log.exception("batch %s of job %s failed for good", seq, job.id)
                        await self._store.fail_migration_batch(job.id, seq)
                        job.failed += 1
                        job.error = f"batch {seq} could not be imported ({type(exc).__name__})"
                        await self._set(job, "failed", None)
                        return
                    await asyncio.sleep(self._settings.retry_base_s * 2**attempt)
        finally:
            self._gate.release(slot)
