"""GCRA arithmetic with a fake clock: exact Retry-After, remaining, refunds, pressure squeeze."""

from __future__ import annotations

import pytest

from gima_server.errors import ApiError
from gima_server.limits.backends import MemoryBackend
from gima_server.limits.gcra import Limit
from gima_server.limits.limiter import Limiter
from gima_server.limits.policy import PolicyError, anonymous_key, parse_rate_limits, route_charge
from gima_server.observability.metrics import Metrics

from ..fakes import FakeClock

CHAT = Limit("chat", rate=30, period_s=60, burst=10)  # one unit every 2 s, 10 at once



async def test_burst_then_exact_retry_after() -> None:
    clock = FakeClock()
    backend = MemoryBackend(clock)
    remaining = [(await backend.check("u", CHAT, 1)).remaining for _ in range(10)]
    assert remaining == [9, 8, 7, 6, 5, 4, 3, 2, 1, 0]
    denied = await backend.check("u", CHAT, 1)
    assert not denied.allowed and denied.retry_after_s == pytest.approx(2.0) and denied.remaining == 0
    clock.now += 0.5
    assert (await backend.check("u", CHAT, 1)).retry_after_s == pytest.approx(1.5)
    assert (await backend.check("u", CHAT, 3)).retry_after_s == pytest.approx(5.5)
    clock.now += 1.5
    assert (await backend.check("u", CHAT, 1)).allowed
    assert (await backend.check("other", CHAT, 1)).remaining == 9  # keys are independent


async def test_refund_and_debt() -> None:
    clock = FakeClock()
    backend = MemoryBackend(clock)
    for _ in range(10):
        await backend.check("u", CHAT, 1)
    await backend.adjust("u", CHAT, -4)
    assert (await backend.check("u", CHAT, 4)).allowed
    await backend.adjust("u", CHAT, 5)  # a charge is never refused, it delays what comes after
    assert (await backend.check("u", CHAT, 1)).retry_after_s == pytest.approx(12.0)


async def test_cost_above_burst_never_passes() -> None:
    decision = await MemoryBackend(FakeClock()).check("u", CHAT, 11)
    assert not decision.allowed


def _limiter(raw: str, clock: FakeClock, pressure: bool = False) -> Limiter:
    return Limiter(parse_rate_limits(raw), MemoryBackend(clock), Metrics(), pressure=lambda: pressure)


async def test_normal_chat_never_429_while_a_flood_does() -> None:
    clock = FakeClock()
    limiter = _limiter("", clock)
    for _ in range(40):  # 100 users, each sending a message every 3 seconds, for two minutes
        for user in range(100):
            await limiter.hit("chat", f"user:{user}")
        clock.now += 3
    refused = 0
    for _ in range(50):  # one user sends 50 messages within a second
        try:
            await limiter.hit("chat", "user:flood")
        except ApiError as exc:
            refused += 1
            assert exc.status == 429 and exc.retry_after_s is not None and exc.retry_after_s > 0
        clock.now += 0.02
    assert refused == 40


async def test_429_carries_retry_after_and_ratelimit_headers() -> None:
    clock = FakeClock()
    limiter = _limiter("chat=30/min/1", clock)
    await limiter.hit("chat", "u")
    clock.now += 0.25
    with pytest.raises(ApiError) as info:
        await limiter.hit("chat", "u")
    assert info.value.retry_after_s == pytest.approx(1.75)
    assert info.value.headers["RateLimit-Policy"] == '"chat";q=30;w=60'
    assert info.value.headers["RateLimit"] == '"chat";r=0;t=2'


async def test_pressure_squeezes_background_classes_not_chat() -> None:
    clock = FakeClock()
    calm, busy = _limiter("search=100/min/8", clock), _limiter("search=100/min/8", clock, pressure=True)
    for _ in range(8):
        await calm.hit("search", "u")
    for _ in range(2):
        await busy.hit("search", "u")  # each costs 4 under pressure
    with pytest.raises(ApiError):
        await busy.hit("search", "u")
    for _ in range(10):
        await busy.hit("chat", "u")


def test_policy_parsing() -> None:
    policy = parse_rate_limits("chat=60/min/20, search=5/s")
    assert policy.limit("chat").burst == 20 and policy.limit("chat").interval_s == 1.0
    assert policy.limit("search").rate == 5 and policy.limit("embeddings").rate == 10
    assert not parse_rate_limits("off").enabled
    for bad in ("chat=abc", "nope=1/min", "chat=1/fortnight", "chat=0/min"):
        with pytest.raises(PolicyError):
            parse_rate_limits(bad)


def test_route_classes() -> None:
    assert route_charge("GET", "/health") is None
    assert route_charge("GET", "/api/chat/streams/m/events") is None
    assert route_charge("POST", "/api/chat/stream") is None  # the handler charges new replies only
    assert route_charge("POST", "/api/auth/login").limit == "auth"  # type: ignore[union-attr]
    assert route_charge("PUT", "/api/migration/jobs/j/batches/1").limit == "migration"  # type: ignore[union-attr]
    assert route_charge("POST", "/api/chats").cost == 2  # type: ignore[union-attr]
    assert anonymous_key("1.2.3.4", "ua") != anonymous_key("1.2.3.5", "ua")
