"""How many Python calls a reply's start makes (issue 26): gima-server against bare aiohttp, counted, not timed.

  python -m bench.start_calls                 # 1,000 starts each over one API key; calls a start, the largest callers
  python -m bench.start_calls --top 40        # more of gima-server's own functions

This machine's speed moves by tens of percent within minutes, so a change of a few percent in a start's CPU needs
alternating runs to see (bench.ab_start). A count of calls does not move: the same code makes the same calls, so a
change that drops work shows at once, in a single run. Each server runs with cProfile switched on by a signal just
before the measured starts and off after them (a `sitecustomize` given to both through PYTHONPATH), the same starts
as bench.start_cost's (the demo's first token ten minutes away: the start alone). cProfile times are inflated by its
own cost and by the store's writer thread holding the GIL, so only counts are reported; CPU comes from
bench.start_cost and bench.ab_start.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import pstats
import signal
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from .paced import Server, bare, gima
from .start_cost import BATCH, starts

_SITECUSTOMIZE = '''
import os, signal
if os.environ.get("GIMA_BENCH_CALLS_OUT"):
    import cProfile
    _profile = []
    def _on(signum, frame):
        _profile.append(cProfile.Profile())
        _profile[-1].enable()
    def _off(signum, frame):
        _profile[-1].disable()
        _profile[-1].dump_stats(os.environ["GIMA_BENCH_CALLS_OUT"])
    signal.signal(signal.SIGUSR1, _on)
    signal.signal(signal.SIGUSR2, _off)
'''


@contextmanager
def counted_env(tmp: Path, name: str) -> Iterator[dict[str, str]]:
    """The environment that makes a server count its calls into tmp/name.prof (set in os.environ as well: the bare
    server inherits it)."""
    (tmp / "sitecustomize.py").write_text(_SITECUSTOMIZE)
    env = {"PYTHONPATH": os.pathsep.join(p for p in (str(tmp), os.environ.get("PYTHONPATH", "")) if p),
           "GIMA_BENCH_CALLS_OUT": str(tmp / f"{name}.prof")}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield env
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


async def _counted_starts(server: Server, path: str, count: int, offset: int) -> None:
    await starts(server, path, BATCH, offset=offset + count)  # warm-up: imports, caches, the first group commit
    os.kill(server.pid, signal.SIGUSR1)
    await asyncio.sleep(0.2)
    await starts(server, path, count, offset=offset)  # includes its own wait for the store's writes
    os.kill(server.pid, signal.SIGUSR2)
    await asyncio.sleep(0.5)


def calls_per(stats_file: Path, count: int, top: int) -> tuple[float, list[tuple[float, str]]]:
    """All calls per unit of work (a start here, an event in bench.steady; Python and C functions), and the
    functions that made the most of them per unit: each function with the calls it made itself (its own callees,
    one level), so a helper that calls many small functions shows as one line."""
    stats = pstats.Stats(str(stats_file))
    table = stats.stats  # type: ignore[attr-defined]
    total = sum(row[1] for row in table.values()) / count
    made: dict[tuple[str, int, str], int] = {}
    for row in table.values():
        for caller, counts in row[4].items():
            made[caller] = made.get(caller, 0) + counts[1]
    by_caller = [(calls / count, f"{_short(file)}:{line} {name}") for (file, line, name), calls in made.items()]
    return total, sorted(by_caller, reverse=True)[:top]


def _short(file: str) -> str:
    parts = Path(file).parts
    for root in ("gima_server", "aiohttp", "aiohttp_sse", "bench", "prometheus_client", "asyncio"):
        if root in parts:
            return "/".join(parts[parts.index(root):])
    return Path(file).name


async def main_async(count: int, top: int) -> list[tuple[str, float, list[tuple[float, str]]]]:
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-calls-") as tmp_dir:
        tmp = Path(tmp_dir)
        with counted_env(tmp, "bare"):
            async with bare(0) as server:
                await _counted_starts(server, "/start", count, 0)
        rows.append(("bare", *calls_per(tmp / "bare.prof", count, top)))
        with counted_env(tmp, "gima") as env:
            extra = {"GIMA_MAX_REPLIES_PER_USER": str(count * 3), **env}
            async with gima(0, 0, first_token_ms=600_000, api_key=True, extra_env=extra) as server:
                await _counted_starts(server, server.path, count, 0)
        rows.append(("gima", *calls_per(tmp / "gima.prof", count, top)))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--starts", type=int, default=1_000)
    parser.add_argument("--top", type=int, default=20, help="how many of gima-server's functions to list")
    args = parser.parse_args()
    os.sched_setaffinity(0, {1})
    rows = asyncio.run(main_async(args.starts, args.top))
    for name, total, own in rows:
        print(f"{name}: {total:.1f} calls a start")
        print(f"  calls made a start, by the function that made them (the {len(own)} largest):")
        for calls, where in own:
            print(f"  {calls:6.2f}  {where}")
    (_, bare_calls, _), (_, gima_calls, _) = rows
    print(f"calls a start: bare {bare_calls:.0f}, gima {gima_calls:.0f} ({gima_calls / bare_calls:.2f}×)")


if __name__ == "__main__":
    main()
