"""The admission gate and the load monitor."""

from __future__ import annotations

import asyncio
import time

import pytest

from gima_server.admission import AdmissionGate, LoadMonitor, Priority
from gima_server.errors import ApiError
from gima_server.observability.metrics import Metrics


def _gate(max_active: int = 2, per_user: int = 10, queue: int = 10, wait_s: float = 1.0) -> AdmissionGate:
    return AdmissionGate(max_active, per_user, queue, wait_s, Metrics())


async def test_waiters_are_served_critical_first_then_in_order() -> None:
    gate = _gate(max_active=1)
    held = await gate.acquire("a")
    order: list[str] = []

    async def wait(user: str, priority: Priority) -> None:
        slot = await gate.acquire(user, priority)
        order.append(user)
        gate.release(slot)

    tasks = [asyncio.create_task(wait(u, p)) for u, p in
             [("low1", Priority.LOW), ("chat1", Priority.CRITICAL), ("low2", Priority.LOW), ("chat2", Priority.CRITICAL)]]
    await asyncio.sleep(0.01)
    assert gate.queue_depth == 4
    gate.release(held)
    await asyncio.gather(*tasks)
    assert order == ["chat1", "chat2", "low1", "low2"]
    assert gate.active == 0


async def test_background_work_never_takes_the_reserved_slots() -> None:
    gate = _gate(max_active=10, wait_s=0.05)
    low = [await gate.acquire(f"job{i}", Priority.LOW) for i in range(9)]
    with pytest.raises(ApiError) as info:
        await gate.acquire("job9", Priority.LOW)  # the last slot is kept for chat
    assert info.value.status == 503
    chat = await gate.acquire("user", Priority.CRITICAL)
    assert gate.active == 10
    for slot in [*low, chat]:
        gate.release(slot)


async def test_full_queue_and_wait_bound_answer_503_with_retry_after() -> None:
    gate = _gate(max_active=1, queue=1, wait_s=0.05)
    held = await gate.acquire("a")
    waiting = asyncio.create_task(gate.acquire("b"))
    await asyncio.sleep(0.01)
    with pytest.raises(ApiError) as full:
        await gate.acquire("c")
    assert full.value.status == 503 and full.value.code == "server_busy" and full.value.retry_after_s
    with pytest.raises(ApiError) as timed_out:
        await waiting
    assert timed_out.value.status == 503 and gate.queue_depth == 0
    gate.release(held)
    assert gate.active == 0


async def test_per_user_bound() -> None:
    gate = _gate(per_user=2)
    await gate.acquire("a")
    await gate.acquire("a")
    with pytest.raises(ApiError) as info:
        await gate.acquire("a")
    assert info.value.status == 429 and info.value.code == "stream_busy"


async def test_a_cancelled_waiter_leaves_no_slot_behind() -> None:
    gate = _gate(max_active=1)
    held = await gate.acquire("a")
    waiter = asyncio.create_task(gate.acquire("b"))
    await asyncio.sleep(0.01)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    gate.release(held)
    assert gate.active == 0 and gate.queue_depth == 0


async def test_load_monitor_sees_a_blocked_loop() -> None:
    gate = _gate()
    monitor = LoadMonitor(gate, Metrics(), lag_threshold_s=0.05, interval_s=0.01)
    sampler = asyncio.create_task(monitor.run())
    await asyncio.sleep(0.05)
    assert not monitor.under_pressure()
    for _ in range(4):
        time.sleep(0.15)  # noqa: ASYNC251 - a handler that blocks the event loop, on purpose
        await asyncio.sleep(0.02)
    assert monitor.under_pressure() and monitor.snapshot()["loopLagMs"] > 50
    sampler.cancel()
    with pytest.raises(asyncio.CancelledError):
        await sampler
