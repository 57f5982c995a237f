"""A Store wrapper that counts and times every call, whatever the backend."""

from __future__ import annotations

import time
from typing import Any, Awaitable, Callable

from ..observability import otel
from ..observability.metrics import Metrics


class InstrumentedStore:
    def __init__(self, inner: object, metrics: Metrics) -> None:
        self._inner = inner
        self._metrics = metrics

    def __getattr__(self, name: str) -> Any:
        target = getattr(self._inner, name)
        if name.startswith("_") or not callable(target):
            return target
        ops, seconds = self._metrics.store_ops.labels(name), self._metrics.store_seconds.labels(name)

        async def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return await target(*args, **kwargs)
            finally:
                ops.inc()
                seconds.observe(time.perf_counter() - started)

        async def traced(*args: Any, **kwargs: Any) -> Any:
            with otel.client_span(f"store {name}", {"db.operation.name": name}):
                return await timed(*args, **kwargs)

        timed_call: Callable[..., Awaitable[Any]] = traced if otel.enabled() else timed
        setattr(self, name, timed_call)  # found directly next time, without __getattr__
        return timed_call
