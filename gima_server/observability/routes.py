"""GET /metrics (Prometheus text) and GET /api/metrics/summary (admin: recent percentiles as JSON)."""

from __future__ import annotations

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from .. import appkeys
from ..auth.sessions import require_user
from ..errors import ApiError

_QS = (0.5, 0.9, 0.99)


_BREAKER_VALUE = {"closed": 0.0, "half_open": 0.5, "open": 1.0}


async def prometheus(request: web.Request) -> web.Response:
    metrics = request.app[appkeys.METRICS]
    for model, state in request.app[appkeys.MODELS].breakers().items():
        metrics.breaker_open.labels(model).set(_BREAKER_VALUE.get(state, 1.0))
    body = generate_latest(metrics.registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def summary(request: web.Request) -> web.Response:
    principal = await require_user(request)
    if "admin" not in principal.user.roles:
        raise ApiError(403, "forbidden", "the metrics summary is for admins")
    m = request.app[appkeys.METRICS]
    load = request.app[appkeys.LOAD].snapshot()
    statuses = {code: window.count() for code, window in sorted(m.recent_status.items()) if window.count()}
    replies, resumes = m.recent_replies.count(), m.recent_resumes.count()
    body = {
        "windowS": 300,
        "endpoints": {
            name: {"count": window.count(), **_ms(window.percentiles(*_QS))}
            for name, window in sorted(m.recent_latency.items())
            if window.count()
        },
        "statuses": statuses,
        "unauthorized": statuses.get("401", 0),
        "rateLimited": statuses.get("429", 0),
        "timeToFirstEventMs": _ms(m.recent_ttfe.percentiles(*_QS)),
        "activeReplies": request.app[appkeys.REGISTRY].live_count,
        "subscribers": int(m.subscribers._value.get()),
        "reconnectRatio": round(resumes / replies, 3) if replies else 0.0,
        "queueDepth": load["queueDepth"],
        "loopLagMs": load["loopLagMs"],
        "eventsPerS": round(m.recent_events.rate_per_s(), 1),
    }
    return web.json_response(body)


def _ms(values: dict[str, float | None]) -> dict[str, float | None]:
    return {k: (round(v * 1000, 2) if v is not None else None) for k, v in values.items()}


def add_routes(app: web.Application) -> None:
    app.router.add_get("/metrics", prometheus)
    app.router.add_get("/api/metrics/summary", summary)
