"""A TCP relay in front of a real redis-server whose directions can be held back, for what a SIGSTOP'd server
cannot show deterministically: a command Redis runs but whose answer arrives after the client gave up, or a
command that never reaches Redis. Everything else passes through unchanged."""

from __future__ import annotations

import asyncio
from contextlib import suppress


class RedisLink:
    def __init__(self, redis_port: int) -> None:
        self._redis_port = redis_port
        self.answer_delay_s = 0.0  # answers held back this long (the command already ran)
        self.drop_requests = False  # commands swallowed (they never run)
        self._server: asyncio.Server | None = None
        self._pumps: set[asyncio.Task[None]] = set()

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"redis://127.0.0.1:{self._server.sockets[0].getsockname()[1]}/0"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", 0)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for pump in list(self._pumps):
            pump.cancel()
        await asyncio.gather(*self._pumps, return_exceptions=True)

    async def _relay(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        redis_reader, redis_writer = await asyncio.open_connection("127.0.0.1", self._redis_port)
        for pump in (self._pipe(client_reader, redis_writer, requests=True),
                     self._pipe(redis_reader, client_writer, requests=False)):
            task = asyncio.create_task(pump)
            self._pumps.add(task)
            task.add_done_callback(self._pumps.discard)

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, requests: bool) -> None:
        """One direction until either side closes: commands (which may be swallowed) or answers (which may wait)."""
        try:
            while chunk := await reader.read(65536):
                if requests and self.drop_requests:
                    continue
                if not requests and self.answer_delay_s:
                    await asyncio.sleep(self.answer_delay_s)
                writer.write(chunk)
        except (ConnectionError, OSError):
            pass
        finally:
            with suppress(Exception):
                writer.close()
