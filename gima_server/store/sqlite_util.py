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
        if not exc_type:
            try:
                self._conn.execute("COMMIT")
            except sqlite3.Error:
                self._roll_back()  # a COMMIT that failed (disk full) must not leave the connection in a transaction
                raise
        else:
            self._roll_back()

    def _roll_back(self) -> None:
        if self._conn.in_transaction:  # SQLite may have rolled back already (SQLITE_FULL, SQLITE_IOERR)
            self._conn.execute("ROLLBACK")
