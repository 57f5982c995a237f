"""Charge each request to its route class before the handler runs."""

from __future__ import annotations

from aiohttp import web

from .. import appkeys
from ..auth.sessions import authenticate
from ..clients import client_address
from .policy import anonymous_key, route_charge


async def caller_key(request: web.Request, limit: str = "default") -> str:
    if limit == "auth":
        return f"ip:{client_address(request)}"  # per address only: a changed User-Agent must not buy new attempts
    if limit == "guest":  # the seeds' composite anonymous key: address and client software
        return anonymous_key(client_address(request), request.headers.get("User-Agent"))
    principal = await authenticate(request)
    if principal is not None:
        return f"user:{principal.user.id}"
    return anonymous_key(client_address(request), request.headers.get("User-Agent"))


async def charge_route(request: web.Request) -> None:
    """Take the request's cost from its route class's bucket, or raise 429."""
    charge = route_charge(request.method, request.path)
    if charge is not None:
        limiter = request.app[appkeys.LIMITER]
        if limiter.policy.enabled:
            await limiter.hit(charge.limit, await caller_key(request, charge.limit), charge.cost)
