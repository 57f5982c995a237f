"""Migration jobs and the imported conversations: shapes, limits and validation (pure)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from ..errors import ApiError, invalid

JOB_STATUSES = ("queued", "running", "paused", "done", "failed")
PAUSE_REASONS = ("chat_streaming", "load", "window", "capacity")


@dataclass
class MigrationJob:
    id: str
    user_id: str
    source: str
    total: int | None
    status: str = "queued"
    imported: int = 0
    skipped: int = 0
    failed: int = 0
    paused_reason: str | None = None
    error: str | None = None
    complete_requested: bool = False
    created_at: float = 0.0

    def public(self, poll_after_ms: int) -> dict[str, object]:
        body: dict[str, object] = {
            "id": self.id, "status": self.status, "total": self.total, "imported": self.imported,
            "skipped": self.skipped, "failed": self.failed, "pollAfterMs": poll_after_ms,
        }
        if self.paused_reason and self.status == "paused":
            body["pausedReason"] = self.paused_reason
        if self.error and self.status == "failed":
            body["error"] = self.error
        return body


@dataclass(frozen=True, slots=True)
class ImportedMessage:
    role: str
    content: str
    created_at: float | None


@dataclass(frozen=True, slots=True)
class ImportedConversation:
    title: str
    messages: tuple[ImportedMessage, ...]
    created_at: float | None
    content_hash: str = field(default="")


@dataclass(frozen=True, slots=True)
class BatchLimits:
    max_conversations: int = 100
    max_messages: int = 2000
    max_message_bytes: int = 32 * 1024
    max_title_chars: int = 200


def content_hash(title: str, messages: tuple[ImportedMessage, ...]) -> str:
    """The same conversation imported twice (or from two jobs) hashes the same: it is skipped, never rewritten."""
    canonical = json.dumps([title, [(m.role, m.content) for m in messages]], ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def parse_batch(body: Any, limits: BatchLimits) -> list[ImportedConversation]:
    """Check the whole batch before anything is written: 400 for shape, 413 for size, 422 for content."""
    if not isinstance(body, dict) or set(body) != {"conversations"} or not isinstance(body["conversations"], list):
        raise invalid("body must be {\"conversations\": [...]}")
    raw_conversations = body["conversations"]
    if len(raw_conversations) > limits.max_conversations:
        raise ApiError(413, "payload_too_large", f"at most {limits.max_conversations} conversations per batch")
    return [_conversation(i, raw, limits) for i, raw in enumerate(raw_conversations)]


def _conversation(index: int, raw: Any, limits: BatchLimits) -> ImportedConversation:
    where = f"conversations[{index}]"
    if not isinstance(raw, dict):  # other fields of an export (updatedAt, model, …) are ignored, never a 400
        raise invalid(f"{where}: expected an object with title?, createdAt?, messages")
    title, created, messages = raw.get("title") or "Imported chat", raw.get("createdAt"), raw.get("messages")
    if not isinstance(title, str) or len(title) > limits.max_title_chars:
        raise invalid(f"{where}.title: text of at most {limits.max_title_chars} characters")
    if created is not None and (not isinstance(created, (int, float)) or isinstance(created, bool)):
        raise invalid(f"{where}.createdAt: a number (seconds)")
    if not isinstance(messages, list) or not messages:
        raise ApiError(422, "invalid_conversation", f"{where}.messages: a non-empty list")
    if len(messages) > limits.max_messages:
        raise ApiError(413, "payload_too_large", f"{where}: at most {limits.max_messages} messages")
    parsed = tuple(_message(f"{where}.messages[{j}]", m, limits) for j, m in enumerate(messages))
    return ImportedConversation(title.strip() or "Imported chat", parsed, created, content_hash(title, parsed))


def _message(where: str, raw: Any, limits: BatchLimits) -> ImportedMessage:
    if not isinstance(raw, dict):  # other fields (id, agent, model, …) are ignored
        raise invalid(f"{where}: expected an object with role, content, createdAt?")
    role, content, created = raw.get("role"), raw.get("content"), raw.get("createdAt")
    if role not in ("user", "assistant"):
        raise ApiError(422, "invalid_conversation", f"{where}.role: user or assistant")
    if not isinstance(content, str):
        raise invalid(f"{where}.content: text")
    if len(content.encode()) > limits.max_message_bytes:
        raise ApiError(413, "payload_too_large", f"{where}.content: at most {limits.max_message_bytes} bytes")
    if created is not None and (not isinstance(created, (int, float)) or isinstance(created, bool)):
        raise invalid(f"{where}.createdAt: a number (seconds)")
    return ImportedMessage(role, content, created)
