"""Small helpers shared by the SQLite store's modules."""

from __future__ import annotations

import sqlite3
import uuid


def new_id() -> str:
    return uuid.uuid4().hex


class transaction:
    """BEGIN IMMEDIATE ... COMMIT/ROLLBACK on an autocommit connection, so a failure half-way writes nothing."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def __enter__(self) -> None:
        self._conn.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, *_: object) -> None:
        self._conn.execute("ROLLBACK" if exc_type else "COMMIT")
