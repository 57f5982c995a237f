"""Two checkouts' cost of a reply's start, measured at the same moments: both servers up at once, batches interleaved.

  python -m bench.ab_start /tmp/old-tree /path/to/new-tree            # a user each (cold sign-in)
  python -m bench.ab_start /tmp/old-tree /path/to/new-tree --api-key  # one API key
  python -m bench.ab_start /path/to/tree /path/to/tree                # two copies of one tree: the noise floor

This machine's speed moves by tens of percent within minutes, so two separate `bench.start_cost` runs cannot show a
change of 10 %. Here each tree's gima-server runs from its own checkout (PYTHONPATH; the generator runs from a
directory with neither), both pinned to core 0, and batches of 100 starts (as bench.start_cost's: the demo's first
token ten minutes away, so only the start is counted) go to one server and then the other, the order swapped each
round. Server CPU per start over all rounds, each tree. Run it twice with the trees swapped: the second server has
measured a few percent higher than the first in an A/A run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
from pathlib import Path

from .paced import Server, _cpu_s, gima, read_stream
from .start_cost import BATCH


async def _batch(server: Server, first: int) -> None:
    seen = await asyncio.gather(*(
        read_stream(server, i, "POST", server.path, json.dumps({"content": f"a question about topic {i}"}).encode(),
                    stop_after=1)
        for i in range(first, first + BATCH)))
    if any(s.status != 200 or s.first is None for s in seen):
        raise SystemExit(f"a start failed: {sorted({s.status for s in seen})}")


async def main_async(trees: list[str], rounds: int, api_key: bool) -> dict[str, object]:
    extra = {"GIMA_MAX_REPLIES_PER_USER": str((rounds + 1) * BATCH * 2)}  # every start's reply stays open
    users = (rounds + 1) * BATCH
    async with gima(0, users, first_token_ms=600_000, api_key=api_key, extra_env={**extra, "PYTHONPATH": trees[0]}) as a, \
            gima(0, users, first_token_ms=600_000, api_key=api_key, extra_env={**extra, "PYTHONPATH": trees[1]}) as b:
        servers = (a, b)
        for server in servers:
            await _batch(server, rounds * BATCH)  # warm-up, with users of its own
        used = [0.0, 0.0]
        for n in range(rounds):
            for which in ((0, 1) if n % 2 == 0 else (1, 0)):
                before = _cpu_s(servers[which].pid)
                await _batch(servers[which], n * BATCH)
                await asyncio.sleep(0.15)  # the group commit's write of the batch
                used[which] += _cpu_s(servers[which].pid) - before
    starts = rounds * BATCH
    return {"api_key": api_key, "starts_each": starts,
            "cpu_us_per_start": {trees[0]: round(used[0] / starts * 1e6), trees[1]: round(used[1] / starts * 1e6)}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("trees", nargs=2, help="two checkouts (each holding gima_server/)")
    parser.add_argument("--rounds", type=int, default=30, help="batches of 100 starts per server")
    parser.add_argument("--api-key", action="store_true", help="every request over one API key (else a user each)")
    args = parser.parse_args()
    trees = [str(Path(tree).resolve()) for tree in args.trees]
    for tree in trees:
        if not (Path(tree) / "gima_server" / "__init__.py").exists():
            raise SystemExit(f"{tree} holds no gima_server/")
    os.chdir("/")  # neither tree may come first on the servers' path by being the working directory
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # every start's stream stays open
    os.sched_setaffinity(0, {1})
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    print(json.dumps(asyncio.run(main_async(trees, args.rounds, args.api_key))))


if __name__ == "__main__":
    main()
