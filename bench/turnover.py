"""What a reply costs to start and end (issue 26): replies ending and new ones starting all the time.

  python -m bench.turnover                       # 4,000 replies, 100 at a time, unpaced; bare, then gima
  python -m bench.turnover --replies 2000 --profile /tmp/prof   # py-spy on the server during gima's phase

Each server pinned to core 0 (taskset), this load generator to core 1. 100 workers each send their replies one
after another (a new connection per reply, as bench.paced does), the demo agent unpaced (the bare server writes
the same events, one `StreamResponse.write` each). Reported per server: events/s, replies/s, time to first event
p50/p99, the server's CPU per reply; gima's events/s as a ratio to the bare server's (target ≥ 1.2). With
`--profile`, py-spy samples gima's server at 250 Hz through its phase and the samples are split by step of a
reply's life (bench/profile_steps.py), printed as CPU microseconds per reply.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
from pathlib import Path

from .common import start_py_spy, stop_py_spy
from .paced import _END, _ID, Server, Stream, _cpu_s, _pct, bare, gima, read_stream
from .profile_steps import steps_per_reply

CONCURRENCY = 100
_LAST_CHUNK = b"\r\n0\r\n\r\n"


class KeptConnection:
    """One HTTP/1.1 connection a worker sends its replies over one after another (as a browser or an SDK's pool
    does): chunked responses read to their last chunk, no new TCP connection per reply."""

    def __init__(self, server: Server, worker: int) -> None:
        self.server, self.worker = server, worker
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def reply(self, body: bytes) -> Stream:
        if self.reader is None or self.writer is None:
            self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.server.port)
        seen = Stream(started=time.perf_counter())
        self.writer.write(
            f"POST {self.server.path} HTTP/1.1\r\nHost: 127.0.0.1:{self.server.port}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
            f"{self.server.headers(self.worker)}\r\n".encode() + body)
        head = await self.reader.readuntil(b"\r\n\r\n")
        seen.status = int(head.split(b" ", 2)[1])
        buffer = b""
        while not buffer.endswith(_LAST_CHUNK):
            chunk = await self.reader.read(262_144)
            if not chunk:
                break
            now = time.perf_counter()
            ids = _ID.findall(chunk)  # a chunk-size line never looks like "id: n"; a frame split across reads is rare
            if ids:
                seen.ids.extend(int(x) for x in ids)
                seen.first = seen.first or now
                seen.last = now
            buffer = (buffer + chunk)[-4096:]
            if _END.search(buffer):
                seen.ended = True
        return seen

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


async def turnover(server: Server, replies: int, profile: str = "", keep_alive: bool = False) -> dict[str, object]:
    per_worker = replies // CONCURRENCY
    spy = await start_py_spy(server.pid, profile, 250) if profile else None

    async def worker(i: int) -> list[Stream]:
        bodies = [json.dumps({"content": f"turn {n} of worker {i}"}).encode() for n in range(per_worker)]
        if not keep_alive:
            return [await read_stream(server, i, "POST", server.path, body) for body in bodies]
        connection = KeptConnection(server, i)
        try:
            return [await connection.reply(body) for body in bodies]
        finally:
            connection.close()

    cpu, t0 = _cpu_s(server.pid), time.perf_counter()
    streams = [s for group in await asyncio.gather(*(worker(i) for i in range(CONCURRENCY))) for s in group]
    elapsed, cpu_used = time.perf_counter() - t0, _cpu_s(server.pid) - cpu
    stop_py_spy(spy)
    ttfe = [s.first - s.started for s in streams if s.first is not None]
    events = sum(len(s.ids) for s in streams)
    return {"server": server.name, "replies": len(streams), "ok": sum(s.ok for s in streams),
            "events_per_reply": round(events / len(streams), 1), "events_per_s": round(events / elapsed),
            "replies_per_s": round(len(streams) / elapsed, 1), "ttfe_ms": {"p50": _pct(ttfe, 0.5), "p99": _pct(ttfe, 0.99)},
            "cpu_us_per_reply": round(cpu_used / len(streams) * 1e6)}


async def main_async(replies: int, words: int, profile: str, keep_alive: bool) -> list[dict[str, object]]:
    rows = []
    async with bare(0, words) as server:
        await turnover(server, CONCURRENCY * 2, keep_alive=keep_alive)  # warm up
        rows.append(await turnover(server, replies, keep_alive=keep_alive))
    async with gima(0, CONCURRENCY, words=words) as server:
        await turnover(server, CONCURRENCY * 2, keep_alive=keep_alive)
        rows.append(await turnover(server, replies, keep_alive=keep_alive))
        if profile:  # a second phase, profiled: py-spy's own cost stays out of the ratio
            profiled = await turnover(server, replies, f"{profile}/turnover.txt", keep_alive)
            rows.append({**profiled, "server": "gima (profiled)"})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--replies", type=int, default=4_000)
    parser.add_argument("--words", type=int, default=120,
                        help="the demo reply's writer words (120: 179 events a reply, as in issue 26)")
    parser.add_argument("--keep-alive", action="store_true",
                        help="each worker keeps one connection for all its replies (else a new one per reply)")
    parser.add_argument("--profile", default="", help="a directory for gima's py-spy profile (raw format)")
    args = parser.parse_args()
    os.sched_setaffinity(0, {1})
    if args.profile:
        Path(args.profile).mkdir(parents=True, exist_ok=True)
    rows = asyncio.run(main_async(args.replies, args.words, args.profile, args.keep_alive))
    for row in rows:
        print(json.dumps(row))
    bare_row, gima_row = rows[:2]
    ratio = float(str(gima_row["events_per_s"])) / float(str(bare_row["events_per_s"]))
    ok = gima_row["ok"] == gima_row["replies"] and bare_row["ok"] == bare_row["replies"]
    print(f"turnover events/s gima/bare: {ratio:.2f} (target ≥ 1.2): {'PASS' if ratio >= 1.2 and ok else 'FAIL'}"
          f"{'' if ok else ' (streams with a gap, a duplicate or no end)'}")
    if args.profile:
        cpu_us = float(str(rows[2]["cpu_us_per_reply"]))
        for step, micros in steps_per_reply(Path(args.profile) / "turnover.txt", cpu_us):
            print(f"  {step:38} {micros:7.0f} µs per reply")


if __name__ == "__main__":
    main()
