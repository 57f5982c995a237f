"""Charge each request to its route class before the handler runs."""

from __future__ import annotations

from aiohttp import web

from .. import appkeys
from ..auth.sessions import authenticate
from ..clients import client_address
from ..plans.catalog import Plan
from .policy import anonymous_key, route_charge


async def caller_key(request: web.Request, limit: str = "default") -> str:
    key, _ = await _caller(request, limit)
    return key


async def _caller(request: web.Request, limit: str) -> tuple[str, Plan | None]:
    """The bucket a request draws from, and the plan of the user it is from (whose quota may differ)."""
    if limit == "auth":
        return f"ip:{client_address(request)}", None  # per address only: a new User-Agent must not buy attempts
    if limit == "guest":  # the seeds' composite anonymous key: address and client software
        return anonymous_key(client_address(request), request.headers.get("User-Agent")), None
    principal = await authenticate(request)
    if principal is not None:
        plans = request.app[appkeys.PLANS]
        return f"user:{principal.user.id}", plans.of(principal.user.plan) if plans is not None else None
    return anonymous_key(client_address(request), request.headers.get("User-Agent")), None


async def charge_route(request: web.Request) -> None:
    """Take the request's cost from its route class's bucket, or raise 429."""
    charge = route_charge(request.method, request.path)
    if charge is not None:
        limiter = request.app[appkeys.LIMITER]
        if limiter.policy.enabled:
            key, plan = await _caller(request, charge.limit)
            await limiter.hit(charge.limit, key, charge.cost, plan)
