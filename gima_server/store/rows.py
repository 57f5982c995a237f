"""What `gima-server store copy` moves: the durable tables, as rows every SQL store reads and writes the same way.

A row is a dict of plain values (roles a list of strings, revoked a bool); each store converts to its own
column types. Tables are listed parents first, so a store with foreign keys takes them in this order, and each
is read in the order of its key (compared bytewise on every store), so a copy resumes after the last key the
destination holds.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol


@dataclass(frozen=True, slots=True)
class Table:
    name: str
    key: tuple[str, ...]
    columns: tuple[str, ...]


TABLES = (
    Table("users", ("id",), ("id", "email", "name", "password_hash", "roles", "created_at", "plan", "plan_at")),
    Table("sessions", ("id",), ("id", "user_id", "created_at", "expires_at", "revoked")),
    Table("api_keys", ("id",), ("id", "user_id", "name", "key_hash", "hint", "created_at", "last_used_at")),
    Table("chats", ("id",), ("id", "user_id", "title", "created_at", "updated_at")),
    Table("messages", ("id",), ("id", "chat_id", "user_id", "role", "content", "status", "finish_reason",
                                "event_count", "fence", "input_tokens", "output_tokens", "receipt", "sections", "seq",
                                "created_at", "model", "context_messages")),
    Table("imported_conversations", ("user_id", "content_hash"), ("user_id", "content_hash", "chat_id")),
)
# Not copied: import jobs and their queued batches (work in progress of a server that is stopped for the copy;
# the conversations they imported are copied, and the record of what was imported with them).

Row = dict[str, Any]
Key = tuple[Any, ...]


class RowStore(Protocol):
    async def read_rows(self, table: Table, after: Key | None, limit: int) -> list[Row]:
        """Up to `limit` rows in key order, after the given key (from the start when None)."""
        ...

    async def write_rows(self, table: Table, rows: list[Row]) -> int:
        """Insert the rows in one transaction, skipping any whose key is already there; how many were new."""
        ...

    async def count_rows(self, table: Table) -> int: ...

    async def last_key(self, table: Table) -> Key | None:
        """The greatest key in the table, in the order read_rows uses."""
        ...
