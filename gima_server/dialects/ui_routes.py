"""The AI SDK's chat routes: POST /api/chat (what `DefaultChatTransport` sends), GET /api/chat/{id}/stream (what
`resumeStream` / `reconnectToStream` ask for), POST /api/chat/{id}/stop.

The client names its chats; the stored chat's id is derived from the user and that name, so one user's name
never reaches another user's chat and no mapping table is needed. A new chat takes the client's earlier
messages as the reply's context; an existing chat's history is the stored one. A client that hangs up does
not stop the reply (it resumes); the stop route does.
"""

from __future__ import annotations

import hashlib
import time
from typing import Any

from aiohttp import web

from .. import appkeys
from ..auth.sessions import Principal, require_user
from ..errors import ApiError, invalid
from ..idempotency import keyed_fingerprint
from ..ids import idempotency_key, new_message_id
from ..observability.tracing import request_trace_id
from ..store.base import Exchange
from ..streams.events import to_json
from ..streams.reply import EventSource
from ..streams.routes import checked_content, checked_options, chosen_model, new_chat_title, start_reply, subscriber_options
from ..streams.sse import Framing, stream_events
from ..validation import parse_json, read_raw
from .translated import TranslatedSource
from .ui_parts import DONE_FRAME, HEADER, UiPartEncoder

MAX_MESSAGES = 1000
MAX_CHAT_ID_CHARS = 200
_TRIGGERS = frozenset({"submit-message", "regenerate-message"})
_ROLES = frozenset({"system", "user", "assistant"})
_IGNORED_PARTS = ("step-start", "reasoning", "source-url", "source-document", "dynamic-tool")  # and tool-*, data-*


def stored_chat_id(user_id: str, client_chat_id: str) -> str:
    return hashlib.sha256(f"ai-sdk:{user_id}:{client_chat_id}".encode()).hexdigest()[:32]


def _client_chat_id(value: object) -> str:
    if not isinstance(value, str) or not 1 <= len(value) <= MAX_CHAT_ID_CHARS or not value.isprintable():
        raise invalid(f"id must be the chat's id: 1-{MAX_CHAT_ID_CHARS} printable characters")
    return value


def _text(message: dict[str, Any], where: str) -> str:
    parts = message.get("parts")
    if not isinstance(parts, list):
        raise invalid(f"{where}.parts must be a list")
    texts = []
    for part in parts:
        kind = part.get("type") if isinstance(part, dict) else None
        if not isinstance(kind, str):
            raise invalid(f"{where}.parts: each part needs a type")
        if kind == "text":
            if not isinstance(part.get("text"), str) or "\x00" in part["text"]:
                raise invalid(f"{where}: a text part's text must be a string without NUL")
            texts.append(part["text"])
        elif kind == "file" and message.get("role") == "user":
            raise invalid(f"{where}: files are not supported; send text")
        elif not (kind in _IGNORED_PARTS or kind.startswith(("tool-", "data-")) or kind == "file"):
            raise invalid(f"{where}: unknown part type {kind!r}")
    return "".join(texts)


def _turns(messages: object) -> list[tuple[str, str]]:
    if not isinstance(messages, list) or not messages:
        raise invalid("messages must be a non-empty list")
    if len(messages) > MAX_MESSAGES:
        raise invalid(f"at most {MAX_MESSAGES} messages")
    turns = []
    for n, message in enumerate(messages):
        where = f"messages[{n}]"
        if not isinstance(message, dict) or not isinstance(message.get("role"), str) or message["role"] not in _ROLES:
            raise invalid(f"{where} must be a message with role system, user or assistant")
        turns.append((str(message["role"]), _text(message, where)))
    if turns[-1][0] != "user":
        raise invalid("the last message must be the user's")
    return turns


async def _body(request: web.Request) -> dict[str, Any]:
    """The transport's body; fields an app adds to it (its own `body` option) are ignored."""
    if request.content_type != "application/json":
        raise ApiError(415, "unsupported_media_type", "body must be application/json")
    body = parse_json(await read_raw(request))
    if not isinstance(body, dict):
        raise invalid("body must be a JSON object")
    trigger = body.get("trigger", "submit-message")
    if not isinstance(trigger, str) or trigger not in _TRIGGERS:
        raise invalid("trigger must be submit-message or regenerate-message")
    if body.get("messageId") is not None and not isinstance(body["messageId"], str):
        raise invalid("messageId must be a string")
    return body


def _framing(trace_id: str) -> bytes:
    error = {"type": "error", "errorText": "slow_consumer: this client fell too far behind; reconnect to resume"}
    return b"data: " + to_json(error).encode() + b"\n\n" + DONE_FRAME


_FRAMING = Framing(b"", _framing)


async def _stream(request: web.Request, principal: Principal, source: EventSource,
                  replayed: bool = False) -> web.StreamResponse:
    headers = {**HEADER, **({"Idempotent-Replayed": "true"} if replayed else {})}
    return await stream_events(request, TranslatedSource(source, UiPartEncoder()), 0, subscriber_options(request),
                               request_trace_id(request), request.app[appkeys.METRICS], headers,
                               principal.session_id, _FRAMING)


async def post_chat(request: web.Request) -> web.StreamResponse:
    principal = await require_user(request)
    body = await _body(request)
    client_chat_id = _client_chat_id(body.get("id"))
    turns = _turns(body.get("messages"))
    content = checked_content(request, turns[-1][1])
    model = chosen_model(request, body.get("model"))
    options = checked_options(body.get("options"))
    store, user_id = request.app[appkeys.STORE], principal.user.id
    chat_id = stored_chat_id(user_id, client_chat_id)
    known = await store.get_chat(user_id, chat_id) is not None
    exchange = Exchange(user_id, chat_id, None if known else new_chat_title(content), new_message_id(), new_message_id(),
                        content,
                        time.time(), context=() if known else tuple(turns[:-1]), model=model,
                        options=options)
    header_key = request.headers.get("Idempotency-Key")
    key = idempotency_key(header_key) if header_key is not None else None
    print_ = keyed_fingerprint(key, "POST", "/api/chat", body)
    source, outcome = await start_reply(request, principal, exchange, False, key, print_)
    return await _stream(request, principal, source, outcome.replayed)


async def _running(request: web.Request, principal: Principal) -> str | None:
    """The message id of the chat's running reply, here or in another process; None when nothing runs."""
    user_id = principal.user.id
    chat_id = stored_chat_id(user_id, _client_chat_id(request.match_info["chatId"]))
    local = request.app[appkeys.REGISTRY].running_in_chat(user_id, chat_id)
    if local is not None:
        return local.message_id
    store = request.app[appkeys.STORE]
    if await store.get_chat(user_id, chat_id) is None:
        return None
    newest = await store.recent_messages(user_id, chat_id, 1)
    last = newest[0] if newest else None
    return last.id if last is not None and last.role == "assistant" and last.status == "streaming" else None


async def resume_chat(request: web.Request) -> web.StreamResponse:
    principal = await require_user(request)
    message_id = await _running(request, principal)
    if message_id is None:
        return web.Response(status=204)
    source, _ = await request.app[appkeys.SOURCES].open(principal.user.id, message_id, 0, request_trace_id(request))
    return await _stream(request, principal, source)


async def stop_chat(request: web.Request) -> web.Response:
    principal = await require_user(request)
    message_id = await _running(request, principal)
    if message_id is None:
        return web.Response(status=204)
    await request.app[appkeys.SOURCES].cancel(principal.user.id, message_id)
    return web.json_response({"messageId": message_id}, status=202)


def add_routes(app: web.Application) -> None:
    app.router.add_post("/api/chat", post_chat)
    app.router.add_get("/api/chat/{chatId}/stream", resume_chat)
    app.router.add_post("/api/chat/{chatId}/stop", stop_chat)
