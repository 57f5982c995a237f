"""The `snapshot` event: all of a reply's text so far, sent instead of events that retention no longer holds."""

from __future__ import annotations

import json
from typing import Any, Sequence

from .events import Event, make_event

Sections = Sequence[tuple[str, int]]  # (agent, offset of its first character in the reply's text), in order


def agents_of(text: str, sections: Sections) -> list[dict[str, str]]:
    """The reply's text cut into its agents' sections, as they streamed."""
    if not sections:
        return [{"agent": "assistant", "text": text}] if text else []
    bounds = [offset for _, offset in sections[1:]] + [len(text)]
    return [{"agent": agent, "text": text[start:end]} for (agent, start), end in zip(sections, bounds, strict=True)]


def snapshot_event(event_id: int, message_id: str, status: str, text: str, sections: Sections) -> Event:
    data: dict[str, Any] = {
        "messageId": message_id,
        "status": status,
        "content": text,
        "agents": agents_of(text, sections),
        "historyLost": True,
    }
    return make_event(event_id, "snapshot", data)


def encode_sections(sections: Sections) -> str:
    return json.dumps([[agent, offset] for agent, offset in sections], separators=(",", ":"))


def decode_sections(raw: str) -> list[tuple[str, int]]:
    if not raw:
        return []
    return [(str(agent), int(offset)) for agent, offset in json.loads(raw)]
