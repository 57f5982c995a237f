"""What a reply's exchange costs the SQLite store as its tables grow, by the kind of message id (issue 26).

  python -m bench.store_writes                  # 100,000 exchanges already stored, then 6,400 in groups of 64
  python -m bench.store_writes --stored 0 200000 --group 64

The store's own `begin_exchange` (a chat, the user's message and the reply's row), called 64 at a time as a burst of
replies calls it, so each group shares one transaction (group commit). Two id kinds: `server`, the ids the server
makes (ids.new_message_id: ordered by time), and `random` (128 random bits: what the server made before, and what a
client may still send as its own messageId). A random key lands on a random page of the id index, and each such
page is written to the WAL whole at the commit; once the index outgrows SQLite's page cache it is read back first.
This process is pinned to one core (its store thread with it); µs per exchange is wall time, which on one core
is CPU time (nothing waits for a disk: the WAL is not synced per commit).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Callable

from gima_server.ids import new_chat_id, new_id, new_message_id
from gima_server.store.base import Exchange
from gima_server.store.sqlite import SqliteStore

_KINDS: dict[str, Callable[[], str]] = {"server": new_message_id, "random": new_id}


async def _groups(store: SqliteStore, user_id: str, make_id: Callable[[], str], count: int, group: int) -> None:
    for first in range(0, count, group):
        await asyncio.gather(*(
            store.begin_exchange(Exchange(user_id, new_chat_id(), "a chat", make_id(), make_id(),
                                          f"a question about topic {first + i}", time.time()))
            for i in range(min(group, count - first))))


async def measure(kind: str, stored: int, count: int, group: int) -> dict[str, object]:
    make_id = _KINDS[kind]
    with tempfile.TemporaryDirectory(prefix="bench-store-") as tmp:
        store = SqliteStore(Path(tmp) / "gima.db")
        await store.open()
        try:
            user = await store.create_user("bench@example.com", "not-a-hash", "Bench", ["user"])
            await _groups(store, user.id, make_id, stored, 500)  # the tables as a server that has run a while has them
            started = time.perf_counter()
            await _groups(store, user.id, make_id, count, group)
            elapsed = time.perf_counter() - started
        finally:
            await store.close()
    return {"ids": kind, "stored": stored, "group": group, "exchanges": count,
            "us_per_exchange": round(elapsed / count * 1e6, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stored", type=int, nargs="+", default=[100_000], help="exchanges stored before measuring")
    parser.add_argument("--exchanges", type=int, default=6_400)
    parser.add_argument("--group", type=int, default=64)
    args = parser.parse_args()
    os.sched_setaffinity(0, {0})
    for stored in args.stored:
        rows = {kind: asyncio.run(measure(kind, stored, args.exchanges, args.group)) for kind in ("random", "server")}
        for row in rows.values():
            print(json.dumps(row), flush=True)
        ratio = float(rows["server"]["us_per_exchange"]) / float(rows["random"]["us_per_exchange"])  # type: ignore[arg-type]
        print(f"{stored:,} stored: server-made ids cost {ratio:.2f}× random ones an exchange", flush=True)


if __name__ == "__main__":
    main()
