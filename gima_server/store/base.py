"""The Store protocol (users, sessions, chats, messages) that every backend implements."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Protocol, Sequence

from ..apikeys.store import ApiKeyStore
from ..errors import ApiError
from ..migration.store import MigrationStore
from ..streams.snapshot import agents_of
from ..webhooks.model import WebhookStore


class DuplicateError(Exception):
    """A unique value (email, message id) is already taken."""


class SchemaError(Exception):
    """The database's schema cannot be used by this code (it is newer): one line saying what to do."""


class StoreUnavailable(ApiError):
    """The store cannot do this now (disk full, read-only, unreachable): nothing was written; try again shortly."""

    def __init__(self, reason: str) -> None:
        super().__init__(503, "store_unavailable", "the store cannot save right now; try again shortly",
                         retry_after_s=5)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class User:
    id: str
    email: str
    name: str
    password_hash: str
    roles: tuple[str, ...]
    created_at: float
    plan: str | None = None  # the plans file's name (None: the file's default)

    def public(self) -> dict[str, object]:
        return {"id": self.id, "email": self.email, "name": self.name, "roles": list(self.roles)}

    def webhook_data(self) -> dict[str, object]:
        """What a user.created webhook says of the user (never the password hash)."""
        return {"userId": self.id, "email": self.email, "roles": list(self.roles), "createdAt": self.created_at}


@dataclass(frozen=True, slots=True)
class AuthSession:
    id: str
    user_id: str
    created_at: float
    expires_at: float
    revoked: bool


@dataclass(frozen=True, slots=True)
class Chat:
    id: str
    user_id: str
    title: str
    created_at: float
    updated_at: float

    def public(self) -> dict[str, object]:
        return {"id": self.id, "title": self.title, "createdAt": self.created_at, "updatedAt": self.updated_at}


MESSAGE_STATUSES = ("streaming", "complete", "cancelled", "error")


@dataclass(frozen=True, slots=True)
class Receipt:
    """What a stopped reply cost: whether the upstream call was closed (billing stopped) and the tokens so far."""

    upstream_closed: bool
    input_tokens: int
    output_tokens: int
    estimated: bool  # counted by this server (the upstream reports usage only at the end of a reply)

    def public(self) -> dict[str, object]:
        return {"upstreamClosed": self.upstream_closed, "usage": self.usage()}

    def usage(self) -> dict[str, object]:
        return {"inputTokens": self.input_tokens, "outputTokens": self.output_tokens, "estimated": self.estimated}


@dataclass(frozen=True, slots=True)
class Message:
    id: str
    chat_id: str
    user_id: str
    role: str  # "user" or "assistant"
    content: str
    status: str  # "complete" for user messages; see MESSAGE_STATUSES for replies
    created_at: float
    finish_reason: str | None = None
    event_count: int = 0  # id of the reply's last event, so a rebuilt replay keeps its numbering
    input_tokens: int | None = None  # as reported by the upstream, when it reports usage
    output_tokens: int | None = None
    receipt: Receipt | None = None  # a reply that was stopped (cancelled, superseded, shut down)
    sections: tuple[tuple[str, int], ...] = ()  # (agent, offset of its first character), as it streamed
    model: str | None = None  # the model id that answered (replies)
    context_messages: int | None = None  # how many earlier messages the reply's request carried (replies)

    def public(self) -> dict[str, object]:
        body: dict[str, object] = {
            "id": self.id,
            "chatId": self.chat_id,
            "role": self.role,
            "content": self.content,
            "createdAt": self.created_at,
        }
        if self.role == "assistant":
            body["status"] = self.status
            body["finishReason"] = self.finish_reason
            if self.input_tokens is not None or self.output_tokens is not None:
                body["usage"] = {"inputTokens": self.input_tokens, "outputTokens": self.output_tokens}
            if self.receipt is not None:
                body.update(self.receipt.public())
            if self.context_messages is not None:
                body["contextMessages"] = self.context_messages
            body["agents"] = agents_of(self.content, self.sections)
            if self.model:
                body["model"] = self.model
        return body


@dataclass(frozen=True, slots=True)
class SearchHit:
    message_id: str
    chat_id: str
    chat_title: str
    role: str
    created_at: float
    snippet: str  # the matched words between \x02 and \x03


@dataclass(frozen=True, slots=True)
class Exchange:
    """A user message and the assistant reply that answers it, written together."""

    user_id: str
    chat_id: str
    new_chat_title: str | None  # set when the chat does not exist yet and must be made
    user_message_id: str
    reply_message_id: str
    content: str
    created_at: float
    fence: int = 0  # fencing token of the producer that writes the reply (see locks.py)
    context: tuple[tuple[str, str], ...] = ()  # (role, content) turns a client sent with it (OpenAI-style), not stored
    model: str = ""  # the model id asked to answer (the reply's row records it; a fallback rewrites it at the end)
    options: Mapping[str, Any] = field(default_factory=dict)  # sampling options the request set, not stored
    context_messages: int | None = None  # how many earlier messages go with it (the reply's row records it)


class Store(MigrationStore, ApiKeyStore, WebhookStore, Protocol):
    async def open(self) -> None: ...
    async def close(self) -> None: ...
    async def ping(self) -> None: ...

    async def create_user(self, email: str, password_hash: str, name: str, roles: Sequence[str]) -> User: ...
    async def get_user(self, user_id: str) -> User | None: ...
    async def get_user_by_email(self, email: str) -> User | None: ...
    async def set_roles(self, user_id: str, roles: Sequence[str]) -> User | None: ...
    async def set_plan_from_event(self, event_id: str, user_id: str | None, plan: str | None, at: float) -> bool | None:
        """A Stripe event's plan change and its id, in one transaction: None when the id was handled before (Stripe
        delivers at least once); else whether the plan changed (as set_plan)."""
        ...
    async def set_plan(self, user_id: str, plan: str | None, at: float) -> bool:
        """Give the user a plan (None: the default) as of `at`; False (nothing written) when the user is gone or
        holds a plan set at a later time (Stripe's events may arrive out of order)."""
        ...

    async def create_session(self, user_id: str, ttl_s: float) -> AuthSession: ...
    async def get_session(self, session_id: str) -> AuthSession | None: ...
    async def get_session_user(self, session_id: str) -> tuple[AuthSession, User] | None:
        """A session with its user (every request's sign-in check when not cached); None if either is gone."""
        ...
    async def revoke_session(self, session_id: str) -> None: ...
    async def delete_guests(self, created_before: float) -> int:
        """Delete guest users (role exactly guest) made before the time, with all their data; return how many."""
        ...
    async def delete_user(self, user_id: str) -> bool:
        """Delete the user and everything of theirs (chats, messages, sessions, keys, imports); False if unknown."""
        ...
    async def list_sessions(self, user_id: str) -> list[AuthSession]:
        """The user's login sessions, newest first (revoked and expired ones included)."""
        ...

    async def create_chat(self, user_id: str, title: str) -> Chat: ...
    async def get_chat(self, user_id: str, chat_id: str) -> Chat | None: ...
    async def list_chats(self, user_id: str, before_chat_id: str | None, limit: int) -> list[Chat]: ...
    async def delete_chat(self, user_id: str, chat_id: str) -> bool: ...
    async def rename_chat(self, user_id: str, chat_id: str, title: str) -> Chat | None: ...

    async def message_owner(self, message_id: str) -> str | None: ...
    async def begin_exchange(self, exchange: Exchange) -> None: ...
    async def get_message(self, user_id: str, message_id: str) -> Message | None: ...
    async def list_messages(self, user_id: str, chat_id: str) -> list[Message]:
        """Oldest first, in the order they were sent (an exchange's user message before its reply)."""
        ...
    async def recent_messages(self, user_id: str, chat_id: str, limit: int,
                              before_id: str | None = None) -> list[Message]:
        """Up to `limit` messages, newest first, older than before_id (a message of the chat) when given: what a
        reply's history reads, a page at a time, instead of the whole chat."""
        ...
    async def checkpoint_reply(self, message_id: str, content: str, fence: int = 0) -> bool:
        """Write partial text; False (nothing written) when the reply has ended or a newer producer owns it."""
        ...

    async def finish_reply(
        self,
        message_id: str,
        content: str,
        status: str,
        finish_reason: str | None,
        event_count: int,
        fence: int = 0,
        usage: tuple[int, int] | None = None,
        receipt: Receipt | None = None,
        sections: Sequence[tuple[str, int]] = (),
        model: str | None = None,
        webhook: tuple[str, str] | None = None,
    ) -> bool:
        """Write the final text, status, the upstream's (input, output) token usage, the agents' sections, the model
        that answered (None: keep the one begin_exchange wrote) and, for a stopped reply, its receipt; False (nothing
        written) when a newer producer owns the reply. webhook: (event type, body) queued for every endpoint that
        takes the type, in the same transaction."""
        ...

    async def search_messages(self, user_id: str, terms: Sequence[str], limit: int, offset: int) -> list[SearchHit]:
        """The user's finished messages containing every term (each taken literally), best match first."""
        ...

    async def messages_to_embed(self, model: str, limit: int, user_id: str | None = None) -> list[tuple[str, str, str]]:
        """Finished messages with text and no vector of this model yet, as (id, user id, content): one user's, or
        anyone's when user_id is None."""
        ...

    async def save_vectors(self, model: str, vectors: Sequence[tuple[str, bytes]]) -> int:
        """Keep each (message id, packed unit vector); a message deleted meanwhile is skipped. How many were new."""
        ...

    async def user_vectors(self, user_id: str, model: str) -> list[tuple[str, bytes]]:
        """Every vector of this model of the user's messages, as (message id, packed vector)."""
        ...

    async def search_hits(self, user_id: str, message_ids: Sequence[str]) -> list[SearchHit]:
        """Those of the messages that are the user's, in the order given, the snippet being the text's start."""
        ...

    async def list_streaming_replies(self, limit: int) -> list[Message]:
        """Replies still marked streaming, oldest first (candidates for the repair of a dead producer's work)."""
        ...

    async def interrupt_reply(self, message_id: str, content: str | None, event_count: int) -> bool:
        """End a reply whose producer died: status error, reason interrupted, content kept unless a fuller text is
        given. False (nothing written) when it is no longer streaming."""
        ...
