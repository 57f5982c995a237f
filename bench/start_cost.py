"""What starting a reply costs, without its events (issue 26): server CPU per reply start, gima-server against bare
aiohttp in the same run.

  python -m bench.start_cost                    # 3,000 starts each, 100 at a time
  python -m bench.start_cost --profile /tmp/p   # and a py-spy'd gima phase split into steps (bench/profile_steps.py)
  python -m bench.start_cost --api-key --whole  # and whole one-word replies: what a reply costs beyond its start
  python -m bench.start_cost --api-key --baseline chat   # against bench/bare.py's chat baseline instead

Each server is pinned to core 0, this generator to core 1. A start is a POST answered up to its first event: gima's
demo agent is told to wait ten minutes before its first token, so what the server spends is the start alone —
sign-in, validation, the store's exchange, the registry, the response and its first event (`--api-key`: every
request over one API key, as bench.ten_thousand sends them; else a user each, as bench.paced). The bare server
(bench/bare.py `/start`) reads the JSON body, opens the response and writes the same first event. The streams stay
open until the phase ends (their replies are still waiting), so no reply's end is counted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
from pathlib import Path

from .common import start_py_spy, stop_py_spy
from .paced import Server, _cpu_s, _pct, bare, gima, read_stream
from .profile_steps import steps_per_reply

BATCH = 100


async def starts(server: Server, path: str, count: int, profile: str = "", offset: int = 0,
                 whole: bool = False) -> dict[str, object]:
    """offset: the first user's number (with users, each phase's are new to the server: no sign-in cached).
    whole: each reply read to its end, not only to its first event."""
    spy = await start_py_spy(server.pid, profile, 250) if profile else None
    cpu = _cpu_s(server.pid)
    ttfe: list[float] = []
    for first in range(0, count, BATCH):
        batch = await asyncio.gather(*(
            read_stream(server, i, "POST", path, json.dumps({"content": f"a question about topic {i}"}).encode(),
                        stop_after=0 if whole else 1)
            for i in range(offset + first, offset + min(count, first + BATCH))))
        for seen in batch:
            if seen.status != 200 or seen.first is None or (whole and not seen.ok):
                raise SystemExit(f"{server.name}: a start failed with status {seen.status}")
            ttfe.append(seen.first - seen.started)
    await asyncio.sleep(0.5)  # what the starts left to do after their first event (the store's writes) is done
    used = _cpu_s(server.pid) - cpu
    stop_py_spy(spy)
    return {"server": server.name, "starts": count, "cpu_us_per_start": round(used / count * 1e6),
            "ttfe_ms": {"p50": _pct(ttfe, 0.5), "p99": _pct(ttfe, 0.99)}}


async def whole_replies(count: int, api_key: bool, chat: bool = False) -> list[dict[str, object]]:
    """A whole one-word reply, unpaced, each server (its start, events and end): against the start alone, what the
    rest of a reply costs."""
    rows = []
    async with bare(0, words=1, chat=chat) as server:
        await starts(server, server.path, BATCH, whole=True)
        rows.append({**await starts(server, server.path, count, whole=True), "server": f"{server.name} (whole reply)"})
    extra = {"GIMA_MAX_REPLIES_PER_USER": str(count * 3)}
    async with gima(0, count * 2 + BATCH, api_key=api_key, extra_env=extra, words=1) as server:
        await starts(server, server.path, BATCH, offset=count * 2, whole=True)
        rows.append({**await starts(server, server.path, count, whole=True), "server": "gima (whole reply)"})
    return rows


async def main_async(count: int, api_key: bool, profile: str, chat: bool = False) -> list[dict[str, object]]:
    rows = []
    async with bare(0, chat=chat) as server:
        await starts(server, "/start", BATCH)  # warm up
        rows.append(await starts(server, "/start", count))
    extra = {"GIMA_MAX_REPLIES_PER_USER": str(count * 3)}  # every start's reply stays open to the phase's end
    async with gima(0, count * 2 + BATCH, first_token_ms=600_000, api_key=api_key, extra_env=extra) as server:
        await starts(server, server.path, BATCH, offset=count * 2)
        rows.append(await starts(server, server.path, count))
        if profile:  # a second phase, profiled: py-spy's own cost stays out of the figures above
            profiled = await starts(server, server.path, count, f"{profile}/start_cost.txt", offset=count)
            rows.append({**profiled, "server": "gima (profiled)"})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--starts", type=int, default=3_000)
    parser.add_argument("--api-key", action="store_true", help="every request over one API key (else a user each)")
    parser.add_argument("--profile", default="", help="a directory for gima's py-spy profile (raw format)")
    parser.add_argument("--baseline", choices=("bare", "chat"), default="bare",
                        help="chat: bench/bare.py as the chat baseline (signs in, checks, writes the exchange)")
    parser.add_argument("--whole", action="store_true",
                        help="also whole one-word replies, unpaced: what a reply's events and end cost beyond its start")
    args = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # every start's stream stays open
    os.sched_setaffinity(0, {1})
    if args.profile:
        Path(args.profile).mkdir(parents=True, exist_ok=True)
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    rows = asyncio.run(main_async(args.starts, args.api_key, args.profile, args.baseline == "chat"))
    for row in rows:
        print(json.dumps(row))
    bare_us, gima_us = (float(str(row["cpu_us_per_start"])) for row in rows[:2])
    baseline = rows[0]["server"]
    print(f"server CPU per reply start: {baseline} {bare_us:.0f} µs, gima {gima_us:.0f} µs ({gima_us / bare_us:.2f}×)")
    if args.profile:
        for step, micros in steps_per_reply(Path(args.profile) / "start_cost.txt", float(str(rows[2]["cpu_us_per_start"]))):
            print(f"  {step:38} {micros:7.0f} µs per start")
    if args.whole:
        wholes = asyncio.run(whole_replies(args.starts, args.api_key, args.baseline == "chat"))
        for row in wholes:
            print(json.dumps(row))
        for name, start_us, row in ((baseline, bare_us, wholes[0]), ("gima", gima_us, wholes[1])):
            whole_us = float(str(row["cpu_us_per_start"]))
            print(f"{name}: a whole one-word reply {whole_us:.0f} µs, its start {start_us:.0f} µs, "
                  f"the rest (events and end) {whole_us - start_us:.0f} µs")


if __name__ == "__main__":
    main()
