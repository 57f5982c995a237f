"""Migration jobs and the imported conversations: shapes, limits and validation (pure)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Sequence

from ..errors import ApiError, invalid

JOB_STATUSES = ("queued", "running", "paused", "done", "failed")
PAUSE_REASONS = ("chat_streaming", "load", "window", "capacity")
# What a lane or a request decides about a job; its counts are only ever added to by a batch's import.
STATE_FIELDS = ("status", "paused_reason", "error", "failed", "complete_requested")


@dataclass
class MigrationJob:
    id: str
    user_id: str
    source: str
    total: int | None
    status: str = "queued"
    imported: int = 0
    skipped: int = 0  # conversations not imported: imported before, or nothing in them to import
    failed: int = 0
    skipped_messages: int = 0  # messages of other roles (system, tool, …): not part of a chat's history here
    paused_reason: str | None = None
    error: str | None = None
    complete_requested: bool = False
    created_at: float = 0.0

    @property
    def finished(self) -> bool:
        return self.status in ("done", "failed")

    def with_state_of(self, other: MigrationJob) -> MigrationJob:
        """This job (as stored: its counts) with other's state: what a lane or a request decided about it. A
        completion once asked for stays asked for: a lane's copy read before it must not take it back."""
        state = {name: getattr(other, name) for name in STATE_FIELDS}
        state["complete_requested"] = self.complete_requested or other.complete_requested
        return dataclasses.replace(self, **state)

    def adopt(self, stored: MigrationJob) -> None:
        """Take the stored job's counts and state: other processes import and complete the same job."""
        for each in dataclasses.fields(self):
            setattr(self, each.name, getattr(stored, each.name))

    def counted(self, imported: int, skipped: int, batch: Sequence[ImportedConversation]) -> MigrationJob:
        """This job as it is once a batch is in (a copy: the job itself changes only after the commit)."""
        return dataclasses.replace(self, imported=self.imported + imported, skipped=self.skipped + skipped,
                                   skipped_messages=self.skipped_messages + sum(c.skipped_messages for c in batch))

    def absorb(self, counted: MigrationJob) -> None:
        self.imported, self.skipped, self.skipped_messages = counted.imported, counted.skipped, counted.skipped_messages

    def public(self, poll_after_ms: int) -> dict[str, object]:
        body: dict[str, object] = {
            "id": self.id, "status": self.status, "total": self.total, "imported": self.imported,
            "skipped": self.skipped, "failed": self.failed, "skippedMessages": self.skipped_messages,
            "pollAfterMs": poll_after_ms,
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
    skipped_messages: int = 0  # of other roles; a conversation of nothing else has no messages and is skipped whole


@dataclass(frozen=True, slots=True)
class BatchLimits:
    max_conversations: int = 100
    max_messages: int = 2000
    max_message_bytes: int = 32 * 1024
    max_title_chars: int = 200


def message_times(conversation: ImportedConversation, created: float) -> list[float]:
    """When each message was written: its own time, or a microsecond after the one before it (histories are
    listed by time, so a message without one keeps its place in the export)."""
    times, last = [], created
    for message in conversation.messages:
        last = message.created_at if message.created_at is not None else last + 1e-6
        times.append(last)
    return times


def content_hash(title: str, messages: tuple[ImportedMessage, ...]) -> str:
    """The same conversation imported twice (or from two jobs) hashes the same: it is skipped, never rewritten."""
    canonical = json.dumps([title, [(m.role, m.content) for m in messages]], ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


IMPORTED_ROLES = ("user", "assistant")
SKIPPED_ROLE = "skipped"  # what a skipped message is kept as in a queued batch, so a re-parse counts it again
# Exports hold epoch seconds (Python, most servers) or milliseconds (JavaScript's Date.now()): a number of
# 1e11 or more is read as milliseconds (1e11 seconds is the year 5138; 1e11 ms is 1973).
_MS_FROM = 1e11
_LATEST_MS = 253_402_300_800_000  # 10000-01-01T00:00:00Z


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
    if not isinstance(messages, list):
        raise invalid(f"{where}.messages: a list")
    if len(messages) > limits.max_messages:
        raise ApiError(413, "payload_too_large", f"{where}: at most {limits.max_messages} messages")
    read = [_message(f"{where}.messages[{j}]", m, limits) for j, m in enumerate(messages)]
    parsed = tuple(m for m in read if m is not None)
    return ImportedConversation(title.strip() or "Imported chat", parsed, timestamp(f"{where}.createdAt", created),
                                content_hash(title, parsed), skipped_messages=len(read) - len(parsed))


def _message(where: str, raw: Any, limits: BatchLimits) -> ImportedMessage | None:
    """The message to import, or None for one of another role (system, tool, …: skipped whatever it holds)."""
    if not isinstance(raw, dict):  # other fields (id, agent, model, …) are ignored
        raise invalid(f"{where}: expected an object with role, content, createdAt?")
    role, content, created = raw.get("role"), raw.get("content"), raw.get("createdAt")
    if not isinstance(role, str):
        raise invalid(f"{where}.role: text (user and assistant are imported, other roles skipped)")
    if role not in IMPORTED_ROLES:
        return None
    if not isinstance(content, str):
        raise invalid(f"{where}.content: text")
    if len(content.encode()) > limits.max_message_bytes:
        raise ApiError(413, "payload_too_large", f"{where}.content: at most {limits.max_message_bytes} bytes")
    return ImportedMessage(role, content, timestamp(f"{where}.createdAt", created))


def timestamp(where: str, raw: Any) -> float | None:
    """Epoch seconds from what exports hold: ISO 8601 text (a zone-less one is UTC), epoch seconds, or epoch
    milliseconds; anything else, or a time before 1970 or after 9999, is a 400 naming the field."""
    if raw is None:
        return None
    expected = f"{where}: ISO 8601 text or epoch seconds or milliseconds from 1970 to 9999"
    if isinstance(raw, str):
        try:
            parsed = datetime.fromisoformat(raw.strip())
        except ValueError:
            raise invalid(expected) from None
        seconds = (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).timestamp()
    elif isinstance(raw, (int, float)) and not isinstance(raw, bool) and abs(raw) < _LATEST_MS * 1000:
        seconds = raw / 1000 if raw >= _MS_FROM else float(raw)  # bounded first: a huge int overflows a float
    else:
        raise invalid(expected)
    if not 0 <= seconds * 1000 < _LATEST_MS:
        raise invalid(expected)
    return seconds


def queued_form(conversations: list[ImportedConversation]) -> str:
    """A checked batch as it waits in the store: what an import needs, re-read by parse_batch to the same
    conversations (times as seconds, each skipped message as a content-less placeholder so it counts again)."""
    return json.dumps({"conversations": [
        {"title": c.title, "createdAt": c.created_at,
         "messages": [{"role": m.role, "content": m.content, "createdAt": m.created_at} for m in c.messages]
         + [{"role": SKIPPED_ROLE}] * c.skipped_messages}
        for c in conversations
    ]})
