"""Durable data behind the Store protocol; the backend is chosen by URL."""

from __future__ import annotations

from ..config import Settings
from .base import Store


def open_store(settings: Settings) -> Store:
    if settings.store_url.startswith(("mongodb://", "mongodb+srv://")):
        try:
            from .mongo import MongoPool, MongoStore
        except ImportError:
            from ..config import ConfigError

            message = "GIMA_STORE_URL: a mongodb:// store needs the mongo extra (pip install 'gima-server[mongo]')"
            raise ConfigError(message) from None
        pool = MongoPool(settings.mongo_max_pool_size, settings.mongo_min_pool_size, settings.mongo_wait_queue_timeout_ms,
                         settings.mongo_max_idle_time_ms, settings.mongo_server_selection_timeout_ms)
        return MongoStore(settings.store_url, pool)
    from .sqlite import SqliteStore

    return SqliteStore(settings.sqlite_path)
