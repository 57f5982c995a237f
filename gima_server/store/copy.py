"""`gima-server store copy SRC_URL DST_URL`: everything durable from one store into another (SQLite → PostgreSQL,
the way out of one box, or back), table by table in batches that each commit, so an interrupted copy goes on
with --continue from the last row the destination holds. Password hashes and API key hashes are copied as they
are, so every password and key keeps working."""

from __future__ import annotations

import sys
from dataclasses import replace
from typing import Any, TextIO, cast

from ..config import POSTGRES_SCHEMES, ConfigError, Settings
from .rows import TABLES, RowStore

BATCH_ROWS = 500


class CopyRefused(Exception):
    """The copy cannot start (one line for the operator)."""


def _open(settings: Settings, url: str, role: str) -> Any:
    from . import open_store

    if url.startswith(("mongodb://", "mongodb+srv://")):
        raise CopyRefused(f"{role}: the MongoDB store cannot be copied yet (copy works between sqlite:/// and "
                          "postgresql:// stores)")
    if not url.startswith(("sqlite:///", *POSTGRES_SCHEMES)):
        raise CopyRefused(f"{role}: expected sqlite:///PATH or postgresql://…")
    try:
        target = replace(settings, store_url=url)
        target.validate()
    except ConfigError as exc:
        raise CopyRefused(f"{role}: {exc}") from None
    return open_store(target)


async def copy_store(settings: Settings, source_url: str, destination_url: str, go_on: bool = False,
                     batch_rows: int = BATCH_ROWS, out: TextIO = sys.stdout) -> bool:
    """Copy every table; True when each table's count in the destination equals the source's."""
    if source_url == destination_url:
        raise CopyRefused("the source and the destination are the same store")
    source, destination = _open(settings, source_url, "source"), _open(settings, destination_url, "destination")
    await source.open()
    try:
        await destination.open()
        try:
            return await _copy(cast(RowStore, source), cast(RowStore, destination), go_on, batch_rows, out)
        finally:
            await destination.close()
    finally:
        await source.close()


async def _copy(source: RowStore, destination: RowStore, go_on: bool, batch_rows: int, out: TextIO) -> bool:
    held = {table.name: await destination.count_rows(table) for table in TABLES}
    if any(held.values()) and not go_on:
        filled = ", ".join(f"{name}: {count}" for name, count in held.items() if count)
        raise CopyRefused(f"the destination is not empty ({filled}); to go on with an interrupted copy into it, "
                          "add --continue")
    for table in TABLES:
        after = await destination.last_key(table) if go_on else None
        copied = 0
        while rows := await source.read_rows(table, after, batch_rows):
            copied += await destination.write_rows(table, rows)
            after = tuple(rows[-1][column] for column in table.key)
        print(f"{table.name}: {copied} copied", file=out)
    matched = True
    for table in TABLES:
        here, there = await source.count_rows(table), await destination.count_rows(table)
        matched &= here == there
        print(f"{table.name}: source {here}, destination {there}{'' if here == there else '  MISMATCH'}", file=out)
    print("counts match" if matched else "counts DO NOT match: was a server writing to either store?", file=out)
    return matched
