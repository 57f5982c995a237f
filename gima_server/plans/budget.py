"""The daily token budget of a user's plan: tokens counted per UTC day, in Redis when configured (every process
sees one count) and in memory otherwise; over the budget a new reply is 429 until the day ends."""

from __future__ import annotations

import asyncio
import calendar
import logging
import time
from typing import Any, Callable

from ..backing import SHARED_FAILURES
from ..errors import ApiError
from ..redis_keys import token_budget
from .catalog import Plan

log = logging.getLogger("gima.plans")
_KEEP_S = 2 * 86_400  # a day's count outlives the day, for what /api/auth/me and late settlements read


def utc_day(now: float) -> str:
    return time.strftime("%Y%m%d", time.gmtime(now))


def next_midnight(now: float) -> float:
    day = time.gmtime(now)
    return calendar.timegm((day.tm_year, day.tm_mon, day.tm_mday, 0, 0, 0)) + 86_400.0


class TokenBudget:
    def __init__(self, redis: Any | None = None, *, timeout_s: float = 0.25,
                 clock: Callable[[], float] = time.time) -> None:
        self._redis = redis
        self._timeout_s = timeout_s
        self.clock = clock
        self._local: dict[str, int] = {}  # user id -> tokens, for self._local_day
        self._local_day = ""

    async def used(self, user_id: str) -> int:
        day = utc_day(self.clock())
        if self._redis is not None:
            try:
                async with asyncio.timeout(self._timeout_s):
                    return int(await self._redis.get(token_budget(user_id, day)) or 0)
            except SHARED_FAILURES as exc:
                log.warning("token budget: Redis unavailable, counting here (%s)", type(exc).__name__)
        return self._local_count(day).get(user_id, 0)

    async def spend(self, user_id: str, tokens: int) -> None:
        """Count tokens a reply used (after it ended: the upstream's count, or the estimate)."""
        if tokens <= 0:
            return
        day = utc_day(self.clock())
        if self._redis is not None:
            try:
                async with asyncio.timeout(self._timeout_s):
                    key = token_budget(user_id, day)
                    async with self._redis.pipeline(transaction=False) as pipe:
                        pipe.incrby(key, tokens)
                        pipe.expire(key, _KEEP_S)
                        await pipe.execute()
                return
            except SHARED_FAILURES as exc:
                log.warning("token budget: Redis unavailable, counting here (%s)", type(exc).__name__)
        counts = self._local_count(day)
        counts[user_id] = counts.get(user_id, 0) + tokens

    async def check(self, user_id: str, plan: Plan | None) -> None:
        """429 naming the budget when the plan's tokens for today are spent (a reply under way may end over it)."""
        if plan is None or plan.tokens_per_day is None:
            return
        if await self.used(user_id) >= plan.tokens_per_day:
            now = self.clock()
            raise ApiError(429, "rate_limited",
                           f"the {plan.name} plan's {plan.tokens_per_day:,} tokens for today are spent; "
                           "they renew at 00:00 UTC", retry_after_s=round(next_midnight(now) - now, 3))

    async def status(self, user_id: str, plan: Plan | None) -> dict[str, object] | None:
        """What /api/auth/me says of the plan and of today's budget."""
        if plan is None:
            return None
        body: dict[str, object] = {"name": plan.name, "tokensPerDay": plan.tokens_per_day}
        if plan.tokens_per_day is not None:
            used = await self.used(user_id)
            body.update(tokensUsedToday=used, tokensLeftToday=max(0, plan.tokens_per_day - used),
                        resetsAt=next_midnight(self.clock()))
        return body

    def _local_count(self, day: str) -> dict[str, int]:
        if day != self._local_day:  # a new day: yesterday's counts are done with
            self._local, self._local_day = {}, day
        return self._local
