"""Reading an upstream's text/event-stream from an aiohttp response, with a deadline on every read.

Hand-written: the format is small and fixed (WHATWG), and the client libraries for it are unmaintained.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import AsyncIterator, Callable

import aiohttp


@dataclass(frozen=True, slots=True)
class SseMessage:
    event: str
    data: str


async def sse_messages(
    response: aiohttp.ClientResponse, read_timeout_s: Callable[[], float]
) -> AsyncIterator[SseMessage]:
    """Yield each dispatched message; read_timeout_s() gives the time allowed for the next line."""
    event, data = "", list[str]()
    while True:
        async with asyncio.timeout(read_timeout_s()):
            raw = await response.content.readline()
        if not raw:
            return
        line = raw.decode("utf-8").rstrip("\r\n")
        if not line:
            if data:
                yield SseMessage(event or "message", "\n".join(data))
            event, data = "", list[str]()
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if name == "event":
            event = value
        elif name == "data":
            data.append(value)
