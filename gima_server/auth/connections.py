"""The open streams and WebSockets of each login session, so that ending a session ends them too."""

from __future__ import annotations

import asyncio
import logging
from typing import Callable

log = logging.getLogger("gima.auth.connections")


class SessionConnections:
    """session id: the closers of its open connections (a stream's handler task, a WebSocket's close)."""

    def __init__(self) -> None:
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


def cancel_task(task: asyncio.Task[object] | None) -> Callable[[], object]:
    """A stream's closer: its handler task is cancelled, the connection ends, and a reconnect meets the 401."""
    return (lambda: task.cancel()) if task is not None else (lambda: None)
