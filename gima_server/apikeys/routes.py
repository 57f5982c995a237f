"""POST /api/keys, GET /api/keys, DELETE /api/keys/{keyId}: a signed-in person manages their programs' keys."""

from __future__ import annotations

import time

from aiohttp import web

from .. import appkeys
from ..auth.connections import end_sessions
from ..auth.sessions import Principal, require_user
from ..errors import ApiError, invalid, not_found
from ..ids import new_id, path_id
from ..validation import Field, read_json
from .model import MAX_KEYS_PER_USER, MAX_NAME_CHARS, ApiKey, key_hash, key_hint, new_key

KEY_BODY = {"name": Field(str, required=True, max_chars=MAX_NAME_CHARS)}
_NO_STORE = {"Cache-Control": "no-store"}


async def _key_owner(request: web.Request) -> Principal:
    """Keys are made by a person: not by a guest, and not by another key (a leaked key cannot mint more)."""
    principal = await require_user(request)
    if principal.via == "api_key":
        raise ApiError(403, "forbidden", "an API key cannot manage API keys; sign in")
    if "guest" in principal.user.roles:
        raise ApiError(403, "forbidden", "guests cannot have API keys")
    return principal


async def create_key(request: web.Request) -> web.Response:
    principal = await _key_owner(request)
    name = str((await read_json(request, KEY_BODY))["name"]).strip()
    if not name:
        raise invalid("name must not be empty")
    secret = new_key()
    key = ApiKey(new_id(), principal.user.id, name, key_hash(secret), key_hint(secret), time.time())
    if not await request.app[appkeys.STORE].create_api_key(key, MAX_KEYS_PER_USER):
        raise ApiError(409, "conflict", f"at most {MAX_KEYS_PER_USER} API keys per user; delete one first")
    body = {"id": key.id, "name": key.name, "key": secret, "createdAt": key.created_at}
    return web.json_response(body, status=201, headers=_NO_STORE)


async def list_keys(request: web.Request) -> web.Response:
    principal = await _key_owner(request)
    keys = await request.app[appkeys.STORE].list_api_keys(principal.user.id)
    return web.json_response({"keys": [k.public() for k in keys]}, headers=_NO_STORE)


async def delete_key(request: web.Request) -> web.Response:
    principal = await _key_owner(request)
    key_id = path_id(request.match_info["keyId"], "API key")
    if not await request.app[appkeys.STORE].delete_api_key(principal.user.id, key_id):
        raise not_found("API key")
    await end_sessions(request.app, [f"key:{key_id}"])  # it stops working and its running streams end with it
    return web.Response(status=204)


def add_routes(app: web.Application) -> None:
    app.router.add_post("/api/keys", create_key)
    app.router.add_get("/api/keys", list_keys)
    app.router.add_delete("/api/keys/{keyId}", delete_key)
