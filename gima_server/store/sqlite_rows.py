"""The RowStore part of the SQLite store (gima-server store copy)."""

from __future__ import annotations

import json
import sqlite3
from typing import Any, Callable

from .rows import Key, Row, Table
from .sqlite_util import transaction


def _to_row(table: Table, record: sqlite3.Row) -> Row:
    row = {column: record[column] for column in table.columns}
    if table.name == "users":
        row["roles"] = json.loads(row["roles"])
    elif table.name == "sessions":
        row["revoked"] = bool(row["revoked"])
    return row


def _from_row(table: Table, row: Row) -> tuple[Any, ...]:
    values = dict(row)
    if table.name == "users":
        values["roles"] = json.dumps(list(values["roles"]))
    elif table.name == "sessions":
        values["revoked"] = int(values["revoked"])
    return tuple(values[column] for column in table.columns)


class SqliteRowsMixin:
    _run: Callable[..., Any]
    _read: Callable[..., Any]

    async def read_rows(self, table: Table, after: Key | None, limit: int) -> list[Row]:
        key = ", ".join(table.key)
        where = f"WHERE ({key}) > ({', '.join('?' * len(table.key))})" if after is not None else ""
        sql = f"SELECT {', '.join(table.columns)} FROM {table.name} {where} ORDER BY {key} LIMIT ?"
        records = await self._read(lambda c: c.execute(sql, (*(after or ()), limit)).fetchall())
        return [_to_row(table, r) for r in records]

    async def write_rows(self, table: Table, rows: list[Row]) -> int:
        sql = (f"INSERT OR IGNORE INTO {table.name} ({', '.join(table.columns)})"
               f" VALUES ({', '.join('?' * len(table.columns))})")

        def write(conn: sqlite3.Connection) -> int:
            with transaction(conn):
                return sum(conn.execute(sql, _from_row(table, row)).rowcount for row in rows)

        written: int = await self._run(write)
        return written

    async def count_rows(self, table: Table) -> int:
        count: int = (await self._read(lambda c: c.execute(f"SELECT COUNT(*) FROM {table.name}").fetchone()))[0]
        return count

    async def last_key(self, table: Table) -> Key | None:
        key = ", ".join(table.key)
        found = await self._read(lambda c: c.execute(
            f"SELECT {key} FROM {table.name} ORDER BY {', '.join(k + ' DESC' for k in table.key)} LIMIT 1").fetchone())
        return tuple(found) if found is not None else None
