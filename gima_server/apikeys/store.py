"""What API keys need from the store (SQLite and MongoDB implement it)."""

from __future__ import annotations

from typing import Protocol

from .model import ApiKey


class ApiKeyStore(Protocol):
    async def create_api_key(self, key: ApiKey, max_per_user: int) -> bool:
        """Save the key; False (nothing saved) when the user already has max_per_user keys."""
        ...

    async def list_api_keys(self, user_id: str) -> list[ApiKey]:
        """The user's keys, newest first."""
        ...

    async def api_key_by_hash(self, key_hash: str) -> ApiKey | None: ...

    async def delete_api_key(self, user_id: str, key_id: str) -> bool:
        """False when the user has no such key (someone else's key included)."""
        ...

    async def api_key_owner(self, key_id: str) -> str | None:
        """The id of the key's user (for an admin's revoke by id), None for no such key."""
        ...

    async def touch_api_key(self, key_id: str, used_at: float) -> None: ...
