"""OpenAI Chat Completions frames from reply events: `chat.completion.chunk` objects, `[DONE]`, the error shape.

No `id:`, `event:` or `retry:` lines: the openai SDK's decoder keeps a last event id across frames and would turn
the next heartbeat comment into an empty event that it cannot parse.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..streams.events import to_json

DONE_FRAME = b"data: [DONE]\n\n"

# Reply error codes as OpenAI's error objects: (HTTP status for a non-streamed call, type).
_ERRORS: dict[str, tuple[int, str]] = {
    "cancelled": (499, "request_cancelled"),
    "superseded": (409, "request_cancelled"),
    "shutting_down": (503, "server_error"),
    "upstream_timeout": (504, "timeout"),
    "upstream_unavailable": (503, "server_error"),
    "upstream_error": (502, "server_error"),
    "backing_unavailable": (503, "server_error"),
    "interrupted": (502, "server_error"),
    "slow_consumer": (500, "server_error"),
}


def error_status(code: str) -> tuple[int, str]:
    return _ERRORS.get(code, (500, "server_error"))


def error_object(data: dict[str, Any]) -> dict[str, Any]:
    """A reply's `error` event as OpenAI's `{"error": {...}}`, keeping the stop receipt when there is one."""
    error: dict[str, Any] = {"message": data.get("message", "the reply failed"), "type": error_status(data["code"])[1],
                             "param": None, "code": data["code"]}
    for extra in ("upstreamClosed", "usage", "traceId"):
        if extra in data:
            error[extra] = data[extra]
    return {"error": error}


def openai_usage(usage: dict[str, Any] | None) -> dict[str, int] | None:
    if not usage:
        return None
    prompt, completion = int(usage["inputTokens"]), int(usage["outputTokens"])
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def _frame(obj: dict[str, Any]) -> bytes:
    return b"data: " + to_json(obj).encode() + b"\n\n"


@dataclass(slots=True)
class ChunkEncoder:
    """One streamed completion's frames; `encode` is called for each reply event in order."""

    completion_id: str
    model: str
    created: int
    include_usage: bool

    def _chunk(self, delta: dict[str, Any], finish_reason: str | None = None) -> bytes:
        return _frame({
            "id": self.completion_id, "object": "chat.completion.chunk", "created": self.created, "model": self.model,
            "system_fingerprint": None,
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}],
        })

    def encode(self, event_id: int, name: str, data: dict[str, Any]) -> bytes:
        """The frames for one reply event (event ids are not sent: see the module's note)."""
        if name == "meta":
            return self._chunk({"role": "assistant", "content": ""})
        if name == "model":  # a fallback answers: later chunks name it, as a router's do
            self.model = str(data["model"])
            return b""
        if name == "delta":
            return self._chunk({"content": data["text"]})
        if name == "snapshot":  # only on a replay that lost its start: the text so far, once
            return self._chunk({"content": data["content"]}) if data.get("content") else b""
        if name == "done":
            frames = self._chunk({}, data.get("finishReason") or "stop")
            if self.include_usage:
                frames += _frame({
                    "id": self.completion_id, "object": "chat.completion.chunk", "created": self.created,
                    "model": self.model, "system_fingerprint": None, "choices": [],
                    "usage": openai_usage(data.get("usage")) or openai_usage({"inputTokens": 0, "outputTokens": 0}),
                })
            return frames + DONE_FRAME
        if name == "error":
            frames = b""
            if data.get("code") == "too_long":
                frames = self._chunk({}, "length")
            else:
                frames = _frame(error_object(data))
            return frames + DONE_FRAME
        return b""  # agent phases and tool notes have no place in a chat completion


def completion_body(completion_id: str, model: str, created: int, content: str, finish_reason: str,
                    usage: dict[str, Any] | None) -> dict[str, Any]:
    """The one `chat.completion` object of a call made without `stream`."""
    return {
        "id": completion_id, "object": "chat.completion", "created": created, "model": model,
        "system_fingerprint": None,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content, "refusal": None},
                     "logprobs": None, "finish_reason": finish_reason}],
        "usage": openai_usage(usage) or openai_usage({"inputTokens": 0, "outputTokens": 0}),
    }
