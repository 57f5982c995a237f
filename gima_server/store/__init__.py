"""Durable data behind the Store protocol; the backend is chosen by URL."""

from __future__ import annotations

from ..config import Settings
from .base import Store


def open_store(settings: Settings) -> Store:
    if settings.store_url.startswith(("mongodb://", "mongodb+srv://")):
        from ..config import ConfigError

        raise ConfigError("GIMA_STORE_URL: the MongoDB store is not available in this version")
    from .sqlite import SqliteStore

    return SqliteStore(settings.sqlite_path)
