"""GET /api/models: the models this server offers, for a client's model picker."""

from __future__ import annotations

from aiohttp import web

from . import appkeys
from .auth.sessions import require_user


async def list_models(request: web.Request) -> web.Response:
    await require_user(request)
    # `voice`: whether /v1/audio/* answer here, so a page offers Record and Read aloud only when they work.
    return web.json_response({"models": request.app[appkeys.MODELS].listing(),
                              "voice": request.app[appkeys.AUDIO] is not None})


def add_routes(app: web.Application) -> None:
    app.router.add_get("/api/models", list_models)
