"""`gima-server db status` and `db upgrade`: where the store's schema stands against this code's numbered steps."""

from __future__ import annotations

import asyncio
import sqlite3
import sys
from typing import Any

from ..config import POSTGRES_SCHEMES, Settings
from . import sqlite_schema
from .base import SchemaError


def db_command(settings: Settings, command: str) -> int:
    if settings.store_url.startswith(("mongodb://", "mongodb+srv://", *POSTGRES_SCHEMES)):
        try:
            return asyncio.run(_server_store(settings, command))
        except SchemaError as exc:
            print(f"gima-server: {exc}", file=sys.stderr)
            return 1

    path = settings.sqlite_path
    if command == "status" and not path.exists():
        print(f"{path}: no database yet; the first start makes schema version {sqlite_schema.LATEST}")
        return 0
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, isolation_level=None, timeout=30.0)
    try:
        if command == "status":
            return _status(conn, str(path))
        sqlite_schema.pending(conn, str(path))  # refused before anything changes a newer database
        conn.execute("PRAGMA journal_mode=WAL")
        applied = sqlite_schema.upgrade(conn, str(path))
    except SchemaError as exc:
        print(f"gima-server: {exc}", file=sys.stderr)
        return 1
    finally:
        conn.close()
    for step in applied:
        print(f"applied step {step.number}: {step.what}")
    print(f"{path}: schema version {sqlite_schema.LATEST}, up to date")
    return 0


async def _server_store(settings: Settings, command: str) -> int:
    """MongoDB or PostgreSQL: both keep their version in the database and apply their steps in open()."""
    from . import open_store

    store: Any = open_store(settings)
    if settings.store_url.startswith(POSTGRES_SCHEMES):
        from . import postgres_schema

        name, latest = store.where, postgres_schema.LATEST
    else:
        from .mongo import MONGO_LATEST

        name, latest = "MongoDB", MONGO_LATEST
    try:
        steps = await store.pending_steps()
        if command == "status":
            current = await store.schema_version()
            print(f"{name}: schema version {current} of {latest}, "
                  + ("up to date" if not steps else f"{len(steps)} {'step' if len(steps) == 1 else 'steps'} to apply"))
            for number, what in steps:
                print(f"  step {number}: {what}")
            return 0
        await store.open()
        for number, what in steps:
            print(f"applied step {number}: {what}")
        print(f"{name}: schema version {latest}, up to date")
        return 0
    finally:
        await store.close()


def _status(conn: sqlite3.Connection, where: str) -> int:
    current = sqlite_schema.version(conn)
    steps = sqlite_schema.pending(conn, where)
    state = "up to date" if not steps else f"{len(steps)} {'step' if len(steps) == 1 else 'steps'} to apply"
    print(f"{where}: schema version {current} of {sqlite_schema.LATEST}, {state}")
    for step in steps:
        print(f"  step {step.number}: {step.what}")
    return 0
