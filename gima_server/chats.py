"""Chats and history: POST/GET /api/chats, GET /api/chats/{chatId}/messages, PATCH/DELETE /api/chats/{chatId}."""

from __future__ import annotations

import asyncio

from aiohttp import web

from . import appkeys
from .auth.sessions import require_user
from .errors import invalid, not_found
from .ids import chat_id_age_s, is_valid_id, path_id
from .validation import Field, read_json, whole_number

MAX_TITLE_CHARS = 200
DEFAULT_PAGE = 50
MAX_PAGE = 100

CHAT_BODY = {"title": Field(str, max_chars=MAX_TITLE_CHARS)}


NEW_CHAT_WAIT_S = 5.0  # how long after a chat was made a request naming it waits for its first exchange
_NEW_CHAT_POLL_S = 0.05


async def chat_exists(request: web.Request, user_id: str, chat_id: str) -> bool:
    """Whether the user has this chat, waiting for it when it may still be on its way to the store: a new chat is
    written while its first reply streams, so the client can name it (its `meta` event) before it is stored."""
    store = request.app[appkeys.STORE]
    if await store.get_chat(user_id, chat_id) is not None:
        return True
    registry = request.app[appkeys.REGISTRY]
    if await registry.chat_being_written(user_id, chat_id):
        return await store.get_chat(user_id, chat_id) is not None
    if registry.chat_written_here(chat_id):
        return False  # nothing of it is on its way here: someone else's, or deleted (it waited 5 s for its 404)
    # Made moments ago by another process (no sticky sessions), whose write may not have landed: look again until
    # the chat is NEW_CHAT_WAIT_S old. Only ids new_chat_id made that recently wait; any other is 404 at once.
    while (age_s := chat_id_age_s(chat_id)) is not None and age_s < NEW_CHAT_WAIT_S:
        await asyncio.sleep(_NEW_CHAT_POLL_S)
        if await store.get_chat(user_id, chat_id) is not None:
            return True
    return False


async def create_chat(request: web.Request) -> web.Response:
    principal = await require_user(request)
    body = await read_json(request, CHAT_BODY)
    title = (body["title"] or "").strip() or "New chat"
    chat = await request.app[appkeys.STORE].create_chat(principal.user.id, title)
    return web.json_response({"chat": chat.public()}, status=201)


def _page_limit(raw: str | None) -> int:
    return DEFAULT_PAGE if raw is None else whole_number(raw, "limit", 1, MAX_PAGE)


async def list_chats(request: web.Request) -> web.Response:
    principal = await require_user(request)
    limit = _page_limit(request.query.get("limit"))
    before = request.query.get("before")
    if before is not None and not is_valid_id(before):
        raise invalid("before must be a chat id")
    chats = await request.app[appkeys.STORE].list_chats(principal.user.id, before, limit)
    body: dict[str, object] = {"chats": [c.public() for c in chats]}
    body["nextCursor"] = chats[-1].id if len(chats) == limit else None
    return web.json_response(body)


async def list_messages(request: web.Request) -> web.Response:
    principal = await require_user(request)
    chat_id = path_id(request.match_info["chatId"], "chat")
    store = request.app[appkeys.STORE]
    if not await chat_exists(request, principal.user.id, chat_id):
        raise not_found("chat")
    messages = await store.list_messages(principal.user.id, chat_id)
    return web.json_response({"messages": [m.public() for m in messages]})


async def delete_chat(request: web.Request) -> web.Response:
    principal = await require_user(request)
    chat_id = path_id(request.match_info["chatId"], "chat")
    request.app[appkeys.REGISTRY].cancel_chat(principal.user.id, chat_id)
    if not await chat_exists(request, principal.user.id, chat_id):
        raise not_found("chat")
    if not await request.app[appkeys.STORE].delete_chat(principal.user.id, chat_id):
        raise not_found("chat")
    return web.Response(status=204)


RENAME_BODY = {"title": Field(str, required=True, max_chars=MAX_TITLE_CHARS)}


async def rename_chat(request: web.Request) -> web.Response:
    principal = await require_user(request)
    chat_id = path_id(request.match_info["chatId"], "chat")
    title = (await read_json(request, RENAME_BODY))["title"].strip()
    if not title:
        raise invalid("title must not be blank")
    if not await chat_exists(request, principal.user.id, chat_id):
        raise not_found("chat")
    chat = await request.app[appkeys.STORE].rename_chat(principal.user.id, chat_id, title)
    if chat is None:
        raise not_found("chat")
    return web.json_response({"chat": chat.public()})


def add_routes(app: web.Application) -> None:
    app.router.add_post("/api/chats", create_chat)
    app.router.add_get("/api/chats", list_chats)
    app.router.add_get("/api/chats/{chatId}/messages", list_messages)
    app.router.add_delete("/api/chats/{chatId}", delete_chat)
    app.router.add_patch("/api/chats/{chatId}", rename_chat)
