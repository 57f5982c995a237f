"""What an event costs a server once every stream has started and before any has ended (issue 26): N streams at
5 tokens/s, the server's CPU read over a window in the middle of the replies, against bare aiohttp in the same run.

  python -m bench.steady                         # 3,000 streams (15k events/s asked: neither server saturated)
  python -m bench.steady --streams 10000         # saturated: the window then shows a CPU share of ~1.0
  python -m bench.steady --profile /tmp/p        # and py-spy --native over the first round's window
  python -m bench.steady --calls --rounds 1 --streams 1000   # Python calls an event (cProfile), by caller

bench.ten_thousand's CPU an event includes each reply's start and end; this one leaves them out, so the two
together tell the per-event path from the per-reply one. Each server pinned to core 0, the generator (the
ten-thousand one, raw asyncio) to core 1. `--rounds` alternates the two servers; the machine's speed moves
between runs, so compare the servers within a round.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from .paced import _TASKSET, Server, _cpu_s, bare, gima
from .start_calls import calls_per, counted_env
from .ten_thousand import TOKENS_PER_S, WORDS, _generator_argv, _raise_open_files

WINDOW_S = (6.0, 14.0)  # after the ramp (every first event by ~5 s at 10,000), before the first end (~18 s)


async def measure(server: Server, streams: int, profile: str, calls: bool = False) -> dict[str, Any]:
    proc = await asyncio.create_subprocess_exec(*_generator_argv(server, 0, streams), stdout=asyncio.subprocess.PIPE)
    began = time.monotonic()
    await asyncio.sleep(WINDOW_S[0])
    if calls:  # cProfile on through the window (a server started under counted_env): counts only, its time is inflated
        os.kill(server.pid, signal.SIGUSR1)
    spy = None
    if profile:  # blocking and native: what the loop thread does in the kernel, too (it pauses the process a little)
        spy = subprocess.Popen(["py-spy", "record", "-p", str(server.pid), "-r", "100", "--native", "--format", "raw",
                                "-o", profile, "-d", str(int(WINDOW_S[1] - WINDOW_S[0]) - 2)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    cpu0, t0 = _cpu_s(server.pid), time.monotonic()
    await asyncio.sleep(WINDOW_S[1] - (time.monotonic() - began))
    cpu1, t1 = _cpu_s(server.pid), time.monotonic()
    if calls:
        os.kill(server.pid, signal.SIGUSR2)
    out, _ = await proc.communicate()
    if spy is not None:
        spy.wait(timeout=60)
    records = json.loads(out)
    # Events delivered in the window, from each stream's first and last event times (its rate in between: paced).
    delivered = 0.0
    for r in records:
        if r["first"] is not None and r["last"] > r["first"]:
            overlap = min(r["last"], t1) - max(r["first"], t0)
            delivered += max(0.0, overlap) * (r["count"] - 1) / (r["last"] - r["first"])
    cpu = cpu1 - cpu0
    return {"server": server.name, "streams": len(records),
            "ok": sum(1 for r in records if r["end"] == "done" and r["in_order"]),
            "cpu_share": round(cpu / (t1 - t0), 3), "events_in_window": round(delivered),
            "cpu_us_per_event": round(cpu / max(1.0, delivered) * 1e6, 2)}


async def main_async(streams: int, rounds: int, profile: str, calls: int = 0) -> None:
    extra = {"GIMA_MAX_REPLIES_PER_USER": str(streams * 2)}  # one program's key, as bench.ten_thousand
    for r in range(rounds):
        ratio = []
        with ExitStack() as stack:
            tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-steady-"))) if calls else None
            if tmp is not None:
                stack.enter_context(counted_env(tmp, "bare"))
            async with bare(TOKENS_PER_S, WORDS) as b:
                row = await measure(b, streams, f"{profile}/steady_bare.txt" if profile and r == 0 else "", bool(calls))
                print(json.dumps({"round": r + 1, **row}), flush=True)
                ratio.append(row["cpu_us_per_event"])
            if tmp is not None:
                _print_calls("bare", tmp / "bare.prof", row["events_in_window"], calls)
                extra = {**extra, **stack.enter_context(counted_env(tmp, "gima"))}
            async with gima(TOKENS_PER_S, 1, words=WORDS, api_key=True, extra_env=extra) as g:
                row = await measure(g, streams, f"{profile}/steady_gima.txt" if profile and r == 0 else "", bool(calls))
                print(json.dumps({"round": r + 1, **row}), flush=True)
                ratio.append(row["cpu_us_per_event"])
            if tmp is not None:
                _print_calls("gima", tmp / "gima.prof", row["events_in_window"], calls)
        print(f"round {r + 1}: CPU an event, gima / bare = {ratio[1] / ratio[0]:.3f}", flush=True)


def _print_calls(name: str, stats_file: Path, events: int, top: int) -> None:
    total, own = calls_per(stats_file, max(1, events), top)
    print(f"{name}: {total:.1f} calls an event (the window's calls over the events delivered in it)")
    for per_event, where in own:
        print(f"  {per_event:6.2f}  {where}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--streams", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--profile", default="", help="a directory: py-spy --native profiles of the first round")
    parser.add_argument("--calls", type=int, nargs="?", const=30, default=0,
                        help="count Python calls an event with cProfile instead (its CPU figures are then inflated); "
                             "how many callers to list (30)")
    args = parser.parse_args()
    _raise_open_files(args.streams)
    if _TASKSET and os.environ.get("GIMA_BENCH_PINNED") != "1":  # this process (and its generator) on core 1
        os.environ["GIMA_BENCH_PINNED"] = "1"
        os.execv(_TASKSET, [_TASKSET, "-c", "1", sys.executable, "-m", "bench.steady", *sys.argv[1:]])
    if args.profile:
        os.makedirs(args.profile, exist_ok=True)
    asyncio.run(main_async(args.streams, args.rounds, args.profile, args.calls))


if __name__ == "__main__":
    main()
