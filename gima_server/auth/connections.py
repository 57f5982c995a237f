"""The open streams and WebSockets of each login session, so that ending a session ends them too."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Callable, Iterable

from aiohttp import web

from .. import appkeys

if TYPE_CHECKING:
    from ..store.base import Store

log = logging.getLogger("gima.auth.connections")


class SessionConnections:
    """session id: the closers of its open connections (a stream's handler task, a WebSocket's close)."""

    def __init__(self) -> None:
        # Bound: the open streams and sockets; a session's entry leaves with its last connection.
        self._open: dict[str, dict[object, Callable[[], object]]] = {}

    def add(self, session_id: str, handle: object, close: Callable[[], object]) -> None:
        self._open.setdefault(session_id, {})[handle] = close

    def discard(self, session_id: str, handle: object) -> None:
        held = self._open.get(session_id)
        if held is not None:
            held.pop(handle, None)
            if not held:
                del self._open[session_id]

    def close_session(self, session_id: str) -> int:
        """End every open connection of the session (in this process); return how many."""
        held = self._open.pop(session_id, {})
        for close in held.values():
            try:
                close()
            except Exception:  # one broken connection must not keep the others open
                log.exception("closing a connection of an ended session failed")
        return len(held)

    def count(self, session_id: str) -> int:
        return len(self._open.get(session_id, ()))


async def account_sessions(store: Store, user_id: str) -> list[str]:
    """Every session an account can hold connections under: its login sessions and its API keys (`key:<id>`)."""
    logins = [s.id for s in await store.list_sessions(user_id)]
    return logins + [f"key:{k.id}" for k in await store.list_api_keys(user_id)]


async def end_sessions(app: web.Application, session_ids: Iterable[str]) -> None:
    """Each session ends now: its cached sign-in (or key) is forgotten and its open streams and WebSockets
    close, here and, through Redis, in every other process."""
    bus = app[appkeys.BUS]
    for session_id in dict.fromkeys(session_ids):
        app[appkeys.SESSIONS].forget(session_id)
        if session_id.startswith("key:"):
            app[appkeys.API_KEYS].forget(session_id.removeprefix("key:"))
        app[appkeys.CONNECTIONS].close_session(session_id)
        if bus is not None:
            await bus.announce_session_ended(session_id)
