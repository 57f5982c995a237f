"""Listening for a burst: every pending connection is accepted in one loop turn.

libuv (under uvloop) accepts one connection per loop turn since 1.45 (libuv PR 3696). On a busy loop a turn
takes several milliseconds, so a burst of new streams waits in the kernel's accept queue for seconds while the
running replies are served (measured: about 65 connections/s at 300 live replies, time to first event 9 s).
No library offers a greedy accept for aiohttp on uvloop, so this site keeps its own listening sockets, accepts
up to `batch` connections each time one is readable, and hands each to the loop as an accepted socket.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
from typing import Sequence

from aiohttp import web

log = logging.getLogger("gima.server")
_OUT_OF_FILES = {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM}
_PAUSE_S = 1.0  # after running out of file descriptors, as asyncio's own accept loop does


class BurstAcceptSite(web.BaseSite):
    __slots__ = ("_host", "_port", "_batch", "_socket_options", "_sockets", "_pending", "_paused")

    def __init__(self, runner: web.BaseRunner, host: str, port: int, *, backlog: int, batch: int = 512,
                 socket_options: Sequence[tuple[int, int, int]] = ()) -> None:
        """socket_options: (level, option, value) set on the listening sockets, so every accepted one has them."""
        super().__init__(runner, backlog=backlog)
        self._host = host
        self._port = port
        self._batch = batch
        self._socket_options = tuple(socket_options)
        self._sockets: list[socket.socket] = []
        self._pending: dict[asyncio.Task[object], socket.socket] = {}  # until the loop has taken the socket
        self._paused = False

    @property
    def name(self) -> str:
        return f"http://{self._host}:{self.port}"

    @property
    def port(self) -> int:
        return int(self._sockets[0].getsockname()[1]) if self._sockets else self._port

    async def start(self) -> None:
        await super().start()
        loop = asyncio.get_running_loop()
        infos = await loop.getaddrinfo(self._host or None, self._port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        try:
            for family, kind, proto, _, address in dict.fromkeys(infos):
                sock = socket.socket(family, kind, proto)
                self._sockets.append(sock)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                if family == socket.AF_INET6:
                    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)  # the IPv4 socket takes IPv4
                for level, option, value in self._socket_options:
                    sock.setsockopt(level, option, value)
                sock.bind(address)
                sock.listen(self._backlog)
                sock.setblocking(False)
        except OSError:
            self._close_sockets()
            raise
        self._listen()

    def _listen(self) -> None:
        loop = asyncio.get_running_loop()
        for sock in self._sockets:
            loop.add_reader(sock.fileno(), self._accept_all, sock)

    def _accept_all(self, listener: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        server = self._runner.server
        assert server is not None
        for _ in range(self._batch):
            try:
                conn, _ = listener.accept()
            except (BlockingIOError, InterruptedError, ConnectionAbortedError):
                return
            except OSError as exc:
                if exc.errno not in _OUT_OF_FILES:
                    raise
                log.warning("accept paused for %.0f s: %s", _PAUSE_S, exc.strerror)
                self._pause(loop)
                return
            # Left blocking here: both loops make it non-blocking as they take it (uv_tcp_open; asyncio's transport
            # set-up), so a setblocking() of ours was a second ioctl() of every connection.
            task = loop.create_task(loop.connect_accepted_socket(server, conn))
            self._pending[task] = conn
            task.add_done_callback(self._connected)

    def _connected(self, task: asyncio.Task[object]) -> None:
        conn = self._pending.pop(task)
        if task.cancelled() or task.exception() is not None:
            # Never handed over (cancelled at shutdown, possibly before it started) or refused: the socket is still
            # ours to close, or it is left to the garbage collector (a ResourceWarning in a test run).
            conn.close()
            if not task.cancelled():
                log.debug("an accepted connection could not start: %r", task.exception())

    def _pause(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._paused:
            return
        self._paused = True
        for sock in self._sockets:
            loop.remove_reader(sock.fileno())

        def resume() -> None:
            self._paused = False
            if self._sockets:
                self._listen()

        loop.call_later(_PAUSE_S, resume)

    def _close_sockets(self) -> None:
        loop = asyncio.get_running_loop()
        for sock in self._sockets:
            if sock.fileno() >= 0:
                loop.remove_reader(sock.fileno())
            sock.close()
        self._sockets = []

    async def stop(self) -> None:
        self._runner._check_site(self)
        self._close_sockets()
        for task in list(self._pending):
            task.cancel()
        self._runner._unreg_site(self)
