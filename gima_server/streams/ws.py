"""GET /ws: the same replies over a WebSocket. Client frames send / cancel / resume; server frames carry the
SSE events as {"type", "id", "messageId", "data"}. Bounded sockets per process, heartbeat, idle timeout."""

from __future__ import annotations

import asyncio
import json
import logging
from contextlib import suppress

from aiohttp import WSCloseCode, WSMsgType, web

from .. import appkeys
from ..auth.sessions import Principal, require_user
from ..background import stop_tasks
from ..errors import ApiError
from ..ids import idempotency_key, is_valid_id
from ..security import check_websocket_origin
from ..validation import Field, check_object, parse_json
from .reply import EventSource
from .routes import MAX_EVENT_ID, STREAM_BODY, begin_reply, open_resume

log = logging.getLogger("gima.ws")
_SEND = {"type": Field(str, required=True), **STREAM_BODY}
_CANCEL = {"type": Field(str, required=True), "messageId": Field(str, required=True, max_chars=64)}
_RESUME = {**_CANCEL, "lastEventId": Field(int, minimum=0, maximum=MAX_EVENT_ID)}


def ws_frame(message_id: str, event_id: int, name: str, frame: bytes) -> str:
    """The SSE frame re-dressed for a WebSocket; its JSON data is reused as it is (encoded once per event)."""
    data = frame.split(b"data: ", 1)[1].split(b"\n", 1)[0].decode()  # JSON data is one line; retry: may follow
    number = event_id if event_id else "null"  # an unnumbered event (backing_unavailable) keeps the client's id
    return f'{{"type":"{name}","id":{number},"messageId":{json.dumps(message_id)},"data":{data}}}'


class _Socket:
    def __init__(self, request: web.Request, principal: Principal, ws: web.WebSocketResponse) -> None:
        self.request = request
        self.principal = principal
        self.ws = ws
        # Bound: the replies this socket follows now; a follow leaves when it ends (it kept every finished
        # follow of a long-lived socket before).
        self.followers: dict[str, asyncio.Task[None]] = {}

    async def error(self, code: str, message: str) -> None:
        await self.ws.send_str(json.dumps({"type": "error", "data": {"code": code, "message": message}}))

    async def follow(self, message_id: str, source: EventSource, cursor: int) -> None:
        """Forward the log from cursor to its last event (a slow socket only delays itself)."""
        try:
            while True:
                await source.wait_beyond(cursor)
                batch = source.events[cursor:]
                cursor += len(batch)
                for event in batch:
                    await self.ws.send_str(ws_frame(message_id, event.id, event.name, event.frame))
                if (batch and batch[-1].terminal) or (source.finished and cursor >= len(source.events)):
                    return
        finally:
            source.close()

    def start_following(self, message_id: str, source: EventSource, cursor: int) -> None:
        previous = self.followers.pop(message_id, None)
        if previous is not None:
            previous.cancel()
        task = self.followers[message_id] = asyncio.create_task(self.follow(message_id, source, cursor))
        task.add_done_callback(lambda done: self._forget(message_id, done))

    def _forget(self, message_id: str, done: asyncio.Task[None]) -> None:
        if self.followers.get(message_id) is done:
            del self.followers[message_id]

    async def handle(self, raw: str) -> None:
        frame = parse_json(raw)  # a bad frame is a 400 error frame; the socket stays
        kind = frame.get("type") if isinstance(frame, dict) else None
        if kind == "send":
            body = check_object(frame, _SEND)
            body.pop("type")
            key = idempotency_key(body["messageId"]) if body["messageId"] else None
            source, outcome = await begin_reply(self.request, self.principal, body, key)
            self.start_following(outcome.message_id, source, 0)
        elif kind in ("cancel", "resume"):
            body = check_object(frame, _CANCEL if kind == "cancel" else _RESUME)
            message_id = body["messageId"]
            if not is_valid_id(message_id):
                raise ApiError(404, "not_found", "message not found")
            if kind == "cancel":
                await self.request.app[appkeys.SOURCES].cancel(self.principal.user.id, message_id)
            else:
                source, cursor = await open_resume(self.request, self.principal, message_id, body["lastEventId"] or 0)
                self.start_following(message_id, source, cursor)
        else:
            raise ApiError(400, "invalid_request", "type must be send, cancel or resume")

    async def close(self) -> None:
        await stop_tasks(self.followers.values())


async def websocket(request: web.Request) -> web.StreamResponse:
    check_websocket_origin(request)
    principal = await require_user(request)
    settings, open_sockets = request.app[appkeys.SETTINGS], request.app[appkeys.WEBSOCKETS]
    if len(open_sockets) >= settings.ws_max_sockets:
        raise ApiError(503, "server_busy", "too many WebSocket connections", retry_after_s=5)
    per_user = request.app[appkeys.WEBSOCKETS_PER_USER]
    user_id = principal.user.id
    if per_user.get(user_id, 0) >= settings.ws_max_sockets_per_user:  # one user cannot take every slot
        raise ApiError(429, "rate_limited", "too many WebSocket connections for this account", retry_after_s=5)
    ws = web.WebSocketResponse(heartbeat=settings.ws_heartbeat_s, max_msg_size=settings.max_body_bytes)
    per_user[user_id] = per_user.get(user_id, 0) + 1
    try:
        return await _serve_socket(request, principal, ws)
    finally:
        if per_user[user_id] <= 1:
            del per_user[user_id]
        else:
            per_user[user_id] -= 1


async def _serve_socket(request: web.Request, principal: Principal, ws: web.WebSocketResponse) -> web.WebSocketResponse:
    settings, open_sockets = request.app[appkeys.SETTINGS], request.app[appkeys.WEBSOCKETS]
    await ws.prepare(request)
    socket = _Socket(request, principal, ws)
    open_sockets.add(ws)
    connections = request.app[appkeys.CONNECTIONS]
    connections.add(principal.session_id, ws, lambda: asyncio.ensure_future(
        ws.close(code=WSCloseCode.POLICY_VIOLATION, message=b"session ended")))
    try:
        while True:
            try:
                message = await ws.receive(timeout=settings.ws_idle_timeout_s)
            except TimeoutError:
                break  # idle for too long
            if message.type != WSMsgType.TEXT:
                break
            try:
                await socket.handle(message.data)
            except ApiError as exc:
                await socket.error(exc.code, exc.message)
    finally:
        open_sockets.discard(ws)
        connections.discard(principal.session_id, ws)
        await socket.close()
        with suppress(Exception):
            await ws.close()
    return ws


def add_routes(app: web.Application) -> None:
    app.router.add_get("/ws", websocket)


