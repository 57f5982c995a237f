"""The limiter the app uses: policy + backend, local fall-back when Redis fails, squeeze under pressure."""

from __future__ import annotations

import asyncio
import logging
import math
import time
from typing import Awaitable, Callable

from ..backing import SHARED_FAILURES
from ..errors import ApiError
from ..observability.metrics import Metrics
from ..plans.catalog import Plan
from .backends import MemoryBackend, RateLimitBackend
from .gcra import Decision, Limit
from .policy import BACKGROUND, FAIL_CLOSED, PRESSURE_COST_FACTOR, RatePolicy

log = logging.getLogger("gima.limits")



def rate_limit_headers(decision: Decision) -> dict[str, str]:
    """IETF httpapi-ratelimit-headers draft syntax: quota q per window w seconds; r left, t seconds to full."""
    limit = decision.limit
    return {
        "RateLimit-Policy": f'"{limit.name}";q={math.floor(limit.rate)};w={math.ceil(limit.period_s)}',
        "RateLimit": f'"{limit.name}";r={decision.remaining};t={math.ceil(decision.reset_s)}',
    }


class Limiter:
    def __init__(
        self,
        policy: RatePolicy,
        backend: RateLimitBackend,
        metrics: Metrics,
        *,
        local: MemoryBackend | None = None,
        pressure: Callable[[], bool] = lambda: False,
        timeout_s: float = 0.25,
        probe_interval_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.policy = policy
        self._backend = backend
        self._local = local  # set when the backend is shared (Redis): the fall-back buckets
        self._metrics = metrics
        self._pressure = pressure
        self._timeout_s = timeout_s
        self._probe_interval_s = probe_interval_s
        self._clock = clock
        self._down_since: float | None = None
        self._last_probe = 0.0

    @property
    def degraded(self) -> bool:
        return self._down_since is not None

    def cost(self, limit_name: str, cost: float) -> float:
        return cost * PRESSURE_COST_FACTOR if limit_name in BACKGROUND and self._pressure() else cost

    async def hit(self, limit_name: str, key: str, cost: float = 1.0, plan: Plan | None = None) -> Decision | None:
        """Take `cost` units or raise 429 (503 when a fail-closed limit cannot be checked). None: limits are off.
        A user's plan may set its own quota for the class (the same bucket, at the plan's rate)."""
        if not self.policy.enabled:
            return None
        limit = (plan.limits.get(limit_name) if plan is not None else None) or self.policy.limit(limit_name)
        decision = await self._check(limit, key, self.cost(limit_name, cost))
        if not decision.allowed:
            self._metrics.rate_limited.labels(limit_name).inc()
            retry = decision.retry_after_s if math.isfinite(decision.retry_after_s) else limit.period_s
            raise ApiError(
                429, "rate_limited", f"too many requests ({limit_name}); retry later",
                retry_after_s=round(retry, 3), headers=rate_limit_headers(decision),
            )
        return decision

    async def adjust(self, limit_name: str, key: str, amount: float) -> None:
        if not self.policy.enabled or amount == 0:
            return
        limit = self.policy.limit(limit_name)
        if self._local is not None and not self._shared_usable():
            await self._local.adjust(key, limit, amount)
            return
        try:
            async with asyncio.timeout(self._timeout_s):
                await self._backend.adjust(key, limit, amount)
        except SHARED_FAILURES as exc:
            if self._local is None:
                raise
            self._went_down(exc)
            await self._local.adjust(key, limit, amount)

    def _shared_usable(self) -> bool:
        """While Redis is down, try it again at most once per probe interval; otherwise go local at once."""
        if self._down_since is None:
            return True
        now = self._clock()
        if now - self._last_probe >= self._probe_interval_s:
            self._last_probe = now
            return True
        return False

    async def _check(self, limit: Limit, key: str, cost: float) -> Decision:
        if self._local is None:
            return await self._backend.check(key, limit, cost)
        if self._shared_usable():
            try:
                async with asyncio.timeout(self._timeout_s):
                    decision = await self._backend.check(key, limit, cost)
            except SHARED_FAILURES as exc:
                self._went_down(exc)
            else:
                self._came_back()
                return decision
        return await self._fall_back(limit, key, cost)

    async def _fall_back(self, limit: Limit, key: str, cost: float) -> Decision:
        self._metrics.ratelimit_fallbacks.labels(limit.name).inc()
        if limit.name in FAIL_CLOSED:
            message = "sign-in is briefly unavailable; retry shortly"
            raise ApiError(503, "unavailable", message, retry_after_s=self._probe_interval_s)
        assert self._local is not None
        return await self._local.check(key, limit, cost)

    async def probe_forever(self, ping: Callable[[], Awaitable[object]]) -> None:
        """Until cancelled: while degraded, try the shared backend once per probe interval, so that limits (and
        /ready) recover when Redis is back even if no request comes to notice it."""
        while True:
            await asyncio.sleep(self._probe_interval_s)
            if self._down_since is None:
                continue
            try:
                async with asyncio.timeout(self._timeout_s):
                    await ping()
            except SHARED_FAILURES:
                continue
            self._came_back()

    def _went_down(self, exc: BaseException) -> None:
        if self._down_since is None:
            self._down_since = self._last_probe = self._clock()
            log.warning("rate-limit backend failed (%s); using local buckets until it answers again", type(exc).__name__)

    def _came_back(self) -> None:
        if self._down_since is not None:
            log.warning("rate-limit backend answers again after %.1f s; shared limits resume", self._clock() - self._down_since)
            self._down_since = None
