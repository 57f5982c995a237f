"""Durable data behind the Store protocol; the backend is chosen by URL."""

from __future__ import annotations

from ..config import POSTGRES_SCHEMES, ConfigError, Settings
from .base import Store


def open_store(settings: Settings) -> Store:
    if settings.store_url.startswith(POSTGRES_SCHEMES):
        try:
            from .postgres import PostgresPool, PostgresStore
        except ImportError:
            raise ConfigError("GIMA_STORE_URL: a postgresql:// store needs the postgres extra "
                              "(pip install 'gima-server[postgres]')") from None
        return PostgresStore(settings.store_url, PostgresPool(settings.postgres_pool_size, min(2, settings.postgres_pool_size),
                                                              settings.postgres_timeout_s))
    if settings.store_url.startswith(("mongodb://", "mongodb+srv://")):
        try:
            from .mongo import MongoPool, MongoStore
        except ImportError:
            message = "GIMA_STORE_URL: a mongodb:// store needs the mongo extra (pip install 'gima-server[mongo]')"
            raise ConfigError(message) from None
        pool = MongoPool(settings.mongo_max_pool_size, settings.mongo_min_pool_size, settings.mongo_wait_queue_timeout_ms,
                         settings.mongo_max_idle_time_ms, settings.mongo_server_selection_timeout_ms)
        return MongoStore(settings.store_url, pool)
    from .sqlite import SqliteStore

    return SqliteStore(settings.sqlite_path)
