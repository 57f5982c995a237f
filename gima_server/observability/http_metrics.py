"""Request metrics: latency by route and status, 401/429 by reason, and the windows for the summary."""

from __future__ import annotations

from aiohttp import web

from .. import appkeys

ERROR_CODE: web.RequestKey[str] = web.RequestKey("error_code", str)
STARTED_AT: web.RequestKey[float] = web.RequestKey("started_at", float)


def route_name(request: web.Request) -> str:
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else "unmatched"


def record_request(request: web.Request, response: web.StreamResponse, elapsed_s: float) -> None:
    metrics = request.app[appkeys.METRICS]
    route, status = route_name(request), response.status
    metrics.request_seconds.labels(route, request.method, str(status)).observe(elapsed_s)
    if status in (401, 429):
        metrics.refusals.labels(route, str(status), request.get(ERROR_CODE, "")).inc()
    if not route.startswith("/static"):
        metrics.recent_latency[f"{request.method} {route}"].add(elapsed_s)
        metrics.recent_status[str(status)].add(1)
