"""The RowStore part of the PostgreSQL store (gima-server store copy)."""

from __future__ import annotations

from typing import Any, Awaitable, Callable

import asyncpg

from .postgres_text import fold, storable
from .rows import Key, Row, Table


def _key(table: Table) -> str:
    """The key compared bytewise (as SQLite and Python compare text), whatever the database's collation."""
    return ", ".join(f'{column} COLLATE "C"' for column in table.key)


class PostgresRowsMixin:
    _fetch: Callable[..., Awaitable[list[asyncpg.Record]]]
    _fetchrow: Callable[..., Awaitable[asyncpg.Record | None]]
    _in_transaction: Callable[..., Awaitable[Any]]

    async def read_rows(self, table: Table, after: Key | None, limit: int) -> list[Row]:
        marks = ", ".join(f"${i + 1}" for i in range(len(table.key)))
        where = f"WHERE ({_key(table)}) > ({marks})" if after is not None else ""
        records = await self._fetch(f"SELECT {', '.join(table.columns)} FROM {table.name} {where}"
                                    f" ORDER BY {_key(table)} LIMIT ${len(after or ()) + 1}", *(after or ()), limit)
        return [dict(r) for r in records]

    async def write_rows(self, table: Table, rows: list[Row]) -> int:
        columns = list(table.columns)
        values = [[storable(v) if isinstance(v, str) else v for v in (row[c] for c in columns)] for row in rows]
        if table.name == "messages":  # finished messages come with their search words, as the store writes them
            columns.append("search")
            for value, row in zip(values, rows, strict=True):
                value.append(fold(storable(row["content"])) if row["status"] != "streaming" else None)
        marks = [f"${i + 1}" for i in range(len(columns))]
        if table.name == "messages":
            marks[-1] = f"to_tsvector('simple', ${len(columns)})"
        sql = (f"INSERT INTO {table.name} ({', '.join(columns)}) VALUES ({', '.join(marks)})"
               f" ON CONFLICT DO NOTHING RETURNING 1")

        async def write(conn: asyncpg.Connection) -> int:
            statement = await conn.prepare(sql)
            return sum([await statement.fetchval(*value) is not None for value in values])

        written: int = await self._in_transaction(write)
        return written

    async def count_rows(self, table: Table) -> int:
        found = await self._fetchrow(f"SELECT COUNT(*) AS n FROM {table.name}")
        return int(found["n"]) if found else 0

    async def last_key(self, table: Table) -> Key | None:
        order = ", ".join(f'{column} COLLATE "C" DESC' for column in table.key)
        found = await self._fetchrow(f"SELECT {', '.join(table.key)} FROM {table.name} ORDER BY {order} LIMIT 1")
        return tuple(found) if found is not None else None
