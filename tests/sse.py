"""A strict SSE parser for tests: it reads frames exactly as an EventSource would."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any

import aiohttp


@dataclass
class SseEvent:
    id: int | None
    name: str
    data: Any


def parse_sse(raw: bytes) -> tuple[list[SseEvent], list[str]]:
    """Return (events, other lines such as comments and retry fields)."""
    events: list[SseEvent] = []
    extras: list[str] = []
    for block in raw.decode().replace("\r\n", "\n").split("\n\n"):
        if not block.strip():
            continue
        fields: dict[str, list[str]] = {}
        for line in block.split("\n"):
            if line.startswith(":") or line.startswith("retry:"):
                extras.append(line)
                continue
            name, _, value = line.partition(":")
            fields.setdefault(name, []).append(value[1:] if value.startswith(" ") else value)
        if "data" not in fields:
            continue
        event_id = int(fields["id"][0]) if "id" in fields else None
        events.append(SseEvent(event_id, fields.get("event", ["message"])[0], json.loads("\n".join(fields["data"]))))
    return events, extras


async def read_until(resp: Any, predicate: Any) -> list[SseEvent]:
    """Read frames off a live response until predicate(events) holds (or the stream ends)."""
    events: list[SseEvent] = []
    while not predicate(events):
        frame = await resp.content.readuntil(b"\n\n")
        if not frame:
            break
        parsed, _ = parse_sse(frame)
        events.extend(parsed)
    return events


async def ends_soon(resp: aiohttp.ClientResponse, within_s: float = 2.0) -> bool:
    """The stream stops (the server closed the connection) within the time."""
    try:
        async with asyncio.timeout(within_s):
            while await resp.content.readany():
                pass
        return True
    except TimeoutError:
        return False
    except aiohttp.ClientPayloadError:
        return True  # cut mid-chunk: ended
