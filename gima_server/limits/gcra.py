"""GCRA (a token bucket expressed as one timestamp): pure functions of (state, now, limit, cost).

The Redis backend runs the same arithmetic in lua/ratelimit.lua; tests hold the two to the same answers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

_EPSILON_S = 1e-6  # sums of float intervals drift by ulps; a microsecond is far below any real limit


@dataclass(frozen=True, slots=True)
class Limit:
    """`rate` units per `period_s`, holding at most `burst` units at once."""

    name: str
    rate: float
    period_s: float
    burst: float

    @property
    def interval_s(self) -> float:
        return self.period_s / self.rate


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    remaining: int  # whole units left after this request
    retry_after_s: float  # 0 when allowed: else the real time until `cost` units are back
    reset_s: float  # time until the bucket is full again
    limit: Limit


def check(tat: float | None, now: float, limit: Limit, cost: float) -> tuple[Decision, float | None]:
    """Return the decision and the new theoretical arrival time to store (None: store nothing)."""
    start = now if tat is None or tat < now else tat
    new_tat = start + cost * limit.interval_s
    allow_at = new_tat - limit.burst * limit.interval_s
    if allow_at - now > _EPSILON_S:
        retry = allow_at - now if cost <= limit.burst else math.inf
        remaining = max(0, math.floor((now - (start - limit.burst * limit.interval_s)) / limit.interval_s + 1e-9))
        return Decision(False, remaining, retry, start - now, limit), None
    remaining = math.floor((now - allow_at) / limit.interval_s + 1e-9)
    return Decision(True, remaining, 0.0, new_tat - now, limit), new_tat


def adjust(tat: float | None, now: float, limit: Limit, amount: float) -> float:
    """Charge (amount > 0, never refused: the debt delays later requests) or refund (amount < 0)."""
    start = now if tat is None or tat < now else tat
    return max(now, start + amount * limit.interval_s)
