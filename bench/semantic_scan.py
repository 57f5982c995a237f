"""What semantic search's honest scan costs: one user's vectors read from the SQLite store and ranked.

  python -m bench.semantic_scan                    # 1,000 / 10,000 / 50,000 messages, 384 and 1,536 dimensions
  taskset -c 0 python -m bench.semantic_scan --messages 10000 --dims 384

Reports, per size, the store read (user_vectors) and the ranking (nearest, run in a worker thread by the server)
as the median of 5 runs. ADR 21 records the numbers and the size at which an index (pgvector) should take over.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import tempfile
import time
from pathlib import Path

from gima_server.semantic.vectors import nearest, pack
from gima_server.store.base import Exchange
from gima_server.store.sqlite import SqliteStore


async def _one(messages: int, dims: int, runs: int) -> tuple[float, float]:
    with tempfile.TemporaryDirectory() as tmp:
        store = SqliteStore(Path(tmp) / "scan.sqlite3")
        await store.open()
        try:
            user = (await store.create_user("u@example.com", "h", "U", ("user",))).id
            rng = random.Random(1)
            for n in range(messages // 2):
                await store.begin_exchange(Exchange(user, "c", "t" if n == 0 else None, f"u{n}", f"a{n}", "q", float(n)))
            ids = [f"{p}{n}" for n in range(messages // 2) for p in ("u", "a")]
            for start in range(0, len(ids), 1000):
                await store.save_vectors("m", [(i, pack([rng.gauss(0, 1) for _ in range(dims)]))
                                               for i in ids[start:start + 1000]])
            query = [rng.gauss(0, 1) for _ in range(dims)]
            reads, ranks = [], []
            for _ in range(runs):
                t0 = time.perf_counter()
                candidates = await store.user_vectors(user, "m")
                t1 = time.perf_counter()
                nearest(query, candidates, 20)
                t2 = time.perf_counter()
                reads.append(t1 - t0)
                ranks.append(t2 - t1)
            return statistics.median(reads), statistics.median(ranks)
        finally:
            await store.close()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, nargs="*", default=[1000, 10_000, 50_000])
    parser.add_argument("--dims", type=int, nargs="*", default=[384, 1536])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    print("| messages | dimensions | store read ms | ranking ms | total ms |")
    print("|---|---|---|---|---|")
    for dims in args.dims:
        for messages in args.messages:
            read, rank = await _one(messages, dims, args.runs)
            print(f"| {messages:,} | {dims} | {read * 1000:.0f} | {rank * 1000:.0f} | {(read + rank) * 1000:.0f} |",
                  flush=True)


if __name__ == "__main__":
    asyncio.run(main())
