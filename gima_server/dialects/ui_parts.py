"""The AI SDK's UI message stream (`x-vercel-ai-ui-message-stream: v1`) from reply events.

Parts: `start` (with the reply's messageId), `start-step`, then one text part per agent section
(`text-start` / `text-delta` / `text-end`), `finish-step`, `finish`, and `[DONE]`. A stopped reply ends with a
`message-metadata` part carrying the receipt, then `abort`; a failed one with `error`. Only fields the SDK's
chunk schema declares are used (older releases validate strictly). The native event id is on the `id:` line.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..streams.events import to_json

HEADER = {"x-vercel-ai-ui-message-stream": "v1"}
DONE_FRAME = b"data: [DONE]\n\n"
_STOPPED = frozenset({"cancelled", "superseded", "shutting_down"})


@dataclass(slots=True)
class UiPartEncoder:
    _open: str | None = None  # the id of the text part being written
    _agent: str | None = None
    _parts: int = 0
    _frames: list[bytes] = field(default_factory=list)

    def _part(self, part: dict[str, Any]) -> None:
        self._frames.append(to_json(part).encode())

    def _close_text(self) -> None:
        if self._open is not None:
            self._part({"type": "text-end", "id": self._open})
            self._open = self._agent = None

    def _text(self, agent: str, text: str) -> None:
        if self._open is None or self._agent != agent:
            self._close_text()
            self._parts += 1
            self._open, self._agent = f"{agent}-{self._parts}", agent
            self._part({"type": "text-start", "id": self._open})
        self._part({"type": "text-delta", "id": self._open, "delta": text})

    def encode(self, event_id: int, name: str, data: dict[str, Any]) -> bytes:
        if name == "meta":
            start: dict[str, Any] = {"type": "start", "messageId": data["messageId"]}
            metadata = {key: data[key] for key in ("model", "contextMessages") if data.get(key) is not None}
            if metadata:
                start["messageMetadata"] = metadata
            self._part(start)
            self._part({"type": "start-step"})
        elif name == "model":  # a fallback took over before the first token
            self._part({"type": "message-metadata", "messageMetadata": dict(data)})
        elif name == "delta" and data["text"]:
            self._text(str(data.get("agent", "assistant")), data["text"])
        elif name == "agent" and data.get("phase") == "end":
            self._close_text()
        elif name == "snapshot" and data.get("content"):  # the start of a replay is gone: the text so far, once
            self._close_text()
            self._text("snapshot", data["content"])
        elif name == "done":
            self._close_text()
            self._part({"type": "finish-step"})
            self._part({"type": "finish", "finishReason": data.get("finishReason") or "stop"})
        elif name == "error":
            self._close_text()
            self._end_with(data)
        return self._flush(event_id, name in ("done", "error"))

    def _end_with(self, data: dict[str, Any]) -> None:
        code = str(data.get("code", "internal_error"))
        if code in _STOPPED:
            receipt = {k: data[k] for k in ("upstreamClosed", "usage") if k in data}
            self._part({"type": "message-metadata", "messageMetadata": {"status": "cancelled", "reason": code, **receipt}})
            self._part({"type": "abort", "reason": code})
        elif code == "too_long":
            self._part({"type": "finish-step"})
            self._part({"type": "finish", "finishReason": "length"})
        else:
            self._part({"type": "error", "errorText": f"{code}: {data.get('message', '')}".strip()})

    def _flush(self, event_id: int, last: bool) -> bytes:
        """The parts, the native event's id on the last of them (a reader's Last-Event-ID then names an event whose
        parts it has all seen)."""
        if not self._frames:
            return b""
        *before, final = self._frames
        self._frames.clear()
        frames = b"".join(b"data: " + part + b"\n\n" for part in before)
        frames += f"id: {event_id}\ndata: ".encode() + final + b"\n\n"
        return frames + (DONE_FRAME if last else b"")
