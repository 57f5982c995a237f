"""Tasks: started at once, stopped for certain (even when a library swallowed the first cancel), and kept."""

from __future__ import annotations

import asyncio
import contextvars
import logging
import sys
from collections.abc import Coroutine, Generator, Iterable
from typing import Any, TypeVar

log = logging.getLogger(__name__)
T = TypeVar("T")


async def stop_tasks(tasks: Iterable[asyncio.Future[Any]], patience_s: float = 0.5) -> None:
    """Cancel the tasks and wait until every one has ended, cancelling again any still running after patience_s.

    On Python 3.11 `asyncio.wait_for` returns the inner result and drops a cancel that lands as the inner
    task finishes (CPython gh-86296, fixed in 3.12); redis-py sends every command through it, so a loop
    cancelled at that instant carries on as if nothing happened, and a single cancel-then-await hangs.
    """
    tasks = list(tasks)
    pending = {task for task in tasks if not task.done()}
    rounds = 0
    while pending:
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=patience_s)
        rounds += 1
        if pending and rounds % 20 == 0:
            log.warning("%d background tasks still running after %d cancels", len(pending), rounds)
    for task in tasks:
        if task.done() and not task.cancelled() and task.exception() is not None:
            log.error("background task %r failed", task, exc_info=task.exception())


_KEPT: set[asyncio.Task[None]] = set()  # the loop holds tasks weakly: these run on after their caller has gone


async def kept(work: Coroutine[Any, Any, T]) -> T:
    """asyncio.shield(work), handing the outcome over a loop turn sooner: a cancel of the caller does not stop the
    work (it runs in a task of its own), and the task sets the caller's future as its last step, where shield's
    future is set from the task's completion callback, a turn later (a turn of a busy loop is a quarter of a second
    or more, paid at every reply's end for its final write). Hand-written: asyncio has no such shield."""
    loop = asyncio.get_running_loop()
    outcome: asyncio.Future[T] = loop.create_future()

    async def run() -> None:
        try:
            result = await work
        except BaseException as exc:  # the caller's to see, or nobody's if it has gone (as with shield)
            if not outcome.done():
                outcome.cancel() if isinstance(exc, asyncio.CancelledError) else outcome.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
        else:
            if not outcome.done():
                outcome.set_result(result)

    task = loop.create_task(run())
    _KEPT.add(task)
    task.add_done_callback(_KEPT.discard)
    return await outcome


_NOTHING: Any = object()


class _Handover(Coroutine[Any, Any, T]):
    """What a task runs once its coroutine's first step has run as it was made: the task's first step takes what
    that step stopped at (the future it waits on, or its outcome), every later one passes straight through."""

    __slots__ = ("_coro", "_waiting", "_result", "_error")

    def __init__(self, coro: Coroutine[Any, Any, T]) -> None:
        self._coro = coro
        self._waiting: Any = _NOTHING
        self._result: Any = _NOTHING
        self._error: BaseException | None = None

    def first_step(self) -> None:
        try:
            self._waiting = self._coro.send(None)
        except StopIteration as stop:
            self._result = stop.value
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException as exc:  # the task's outcome, as if its own first step had raised it
            self._error = exc

    def send(self, value: Any) -> Any:
        waiting, self._waiting = self._waiting, _NOTHING
        if waiting is not _NOTHING:
            if not (isinstance(waiting, asyncio.Future) and waiting.done()):
                return waiting
            # Already settled (a timer that fired at this turn's start): the coroutine goes on in this step, as an
            # eager task's would, instead of the task waking a turn later to find it settled.
            waiting._asyncio_future_blocking = False
            return self._coro.send(None)
        if self._error is not None:
            error, self._error = self._error, None
            raise error
        if self._result is not _NOTHING:
            raise StopIteration(self._result)
        return self._coro.send(value)

    def throw(self, typ: Any, val: Any = None, tb: Any = None) -> Any:
        waiting, self._waiting = self._waiting, _NOTHING
        if isinstance(waiting, asyncio.Future):
            waiting.cancel()  # as Task.cancel() cancels the future its coroutine waits on
        if self._result is not _NOTHING or self._error is not None:  # it had ended: nothing left to throw into
            raise typ if val is None else val
        return self._coro.throw(typ) if val is None else self._coro.throw(typ, val, tb)

    def close(self) -> None:
        self._coro.close()

    def __await__(self) -> Generator[Any, None, T]:
        raise TypeError("a handover is run by its task, never awaited")


def started_task(loop: asyncio.AbstractEventLoop, coro: Coroutine[Any, Any, T], name: str | None = None) -> asyncio.Task[T]:
    """A task whose first step runs now, in its own context and as the current task, up to its first wait; the rest
    runs as any task's. Python 3.12's eager_start; on 3.11 (which has none) the first step is run by hand and the
    task takes over from where it stopped."""
    context = contextvars.copy_context()
    if sys.version_info >= (3, 12):
        return asyncio.Task(coro, loop=loop, name=name, context=context, eager_start=True)  # type: ignore[call-arg]
    handover = _Handover(coro)
    task = loop.create_task(handover, name=name, context=context)
    caller = asyncio.current_task(loop)
    # The caller steps aside so that code in the first step (asyncio.timeout, a client's timer) sees its own task.
    if caller is not None:
        asyncio.tasks._leave_task(loop, caller)
    asyncio.tasks._enter_task(loop, task)
    try:
        context.run(handover.first_step)
    finally:
        asyncio.tasks._leave_task(loop, task)
        if caller is not None:
            asyncio.tasks._enter_task(loop, caller)
    return task
