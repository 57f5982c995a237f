"""Ten thousand replies at once over one API key, on one core (issue 26): gima-server against bare aiohttp.

  python -m bench.ten_thousand                    # 10,000 streams, one generator process, then two
  python -m bench.ten_thousand --streams 2000     # smaller
  python -m bench.ten_thousand --generators 1 --profile /tmp/p   # and each server's first 4 s (the ramp) py-spy'd
  python -m bench.ten_thousand --generators 1 --env GIMA_SSE_COALESCE_MAX_MS=400   # gima with a setting changed
  python -m bench.ten_thousand --generators 1 --runs 3   # three runs, then each target's count of passes

All streams are opened at once (no ramp), each a reply of the demo agent at 5 tokens/s (10,000 × 5 = 50k events/s
asked). gima-server gets every request over one API key (its per-user reply cap raised to fit: one program's
calls); the bare server (bench/bare.py, one `StreamResponse.write` per event, listen backlog 4,096) writes the same
events. Each server is pinned to core 0, the load generator to core 1 (`taskset`).

The generator is raw asyncio in worker processes (`--generators 1` and `2`, both on core 1). How much of the time
to first event is the generator's own shows two ways: the split run (two event loops share the connects and
reads), and each stream's time from the moment its connection was open (the server's share) against the time from
the moment its coroutine started (which includes waiting on the generator's own loop to connect it).

Reported per server and generator count: events/s, time to first event p50/p99 (from the stream's start and from
its connection), the slowest reply's event rate against the median's, streams with an error, a gap or no end.
PASS/FAIL: events/s ≥ 1.0× bare, TTFE p99 ≤ bare's, slowest/median ≥ 0.8, no bad stream. The machine's speed
moves between minutes (one session's p99 verdict flipped on unchanged code), so README reports `--runs 3`'s count.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import sys
import time
from typing import Any

from .common import Verdict, print_pass_counts, print_verdicts, start_py_spy, stop_py_spy
from .paced import _ID, _MESSAGE_ID, _TASKSET, Server, _cpu_s, _pct, bare, gima, sse_frames

PROFILED_S = 4.0  # the ramp: every stream has started by then on either server (TTFE p99 2-7 s)

_END = b"event: done"
_ERROR = b"event: error"
TOKENS_PER_S = 5
WORDS = 40  # about 65 events a reply: 13 s at 5 tokens/s


async def _one(port: int, path: str, header: str, i: int) -> dict[str, Any]:
    """A stream's record: started, connected and first/last event times (monotonic: comparable across the
    generator processes), its ids in order, how it ended."""
    record: dict[str, Any] = {"started": time.monotonic(), "connected": None, "first": None, "last": None,
                              "count": 0, "in_order": True, "status": 0, "end": ""}
    body = json.dumps({"content": f"question {i}"}).encode()
    writer = None
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        record["connected"] = time.monotonic()
        writer.write(f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
                     f"Content-Length: {len(body)}\r\n{header}Connection: close\r\n\r\n".encode() + body)
        head = await reader.readuntil(b"\r\n\r\n")
        record["status"] = int(head.split(b" ", 2)[1])
        expected = 1
        # monotonic: comparable across the generator processes
        if record["status"] == 200:
            async for now, complete in sse_frames(reader, time.monotonic):
                prev_last = record["last"]
                for raw in _ID.findall(complete):
                    record["in_order"] &= int(raw) == expected
                    expected += 1
                    record["count"] += 1
                    record["first"] = record["first"] or now
                    if record["count"] == 3:  # meta, the agent's start, the first token
                        record["third"] = now
                    record["last"] = now
                if _END in complete or _ERROR in complete:
                    record["end_gap"] = now - (prev_last or now)  # from the last token to the end event
                    record["end"] = "done" if _END in complete else "error"
                    if record["end"] == "error" and (found := _MESSAGE_ID.search(complete)):
                        record["end"] += f" {found.group(1).decode()}"
                    break
    except OSError as exc:
        record["end"] = f"{type(exc).__name__}"
    finally:
        if writer is not None:
            writer.close()
    return record


async def _worker(port: int, path: str, token: str, first: int, count: int) -> list[dict[str, Any]]:
    header = f"Authorization: Bearer {token}\r\n" if token else ""
    return list(await asyncio.gather(*(_one(port, path, header, first + i) for i in range(count))))


def _generator_argv(server: Server, first: int, count: int) -> list[str]:
    argv = [sys.executable, "-m", "bench.ten_thousand", "--worker", "--port", str(server.port), "--path", server.path,
            "--first", str(first), "--streams", str(count), "--token", server.tokens[0] if server.tokens else ""]
    return [_TASKSET, "-c", "1", *argv] if _TASKSET else argv


async def run_generators(server: Server, streams: int, generators: int, profile: str = "") -> tuple[list[dict[str, Any]], float]:
    """Start the generator processes together; every stream's record from all of them. profile: a path for a
    py-spy profile of the server's first PROFILED_S seconds (bench/profile_steps.py reads it)."""
    spy = await start_py_spy(server.pid, profile, 250) if profile else None
    if spy is not None:
        asyncio.get_running_loop().call_later(PROFILED_S, stop_py_spy, spy)
    share = -(-streams // generators)
    procs = [await asyncio.create_subprocess_exec(*_generator_argv(server, g * share, min(share, streams - g * share)),
                                                  stdout=asyncio.subprocess.PIPE)
             for g in range(generators)]
    cpu = _cpu_s(server.pid)
    outputs = await asyncio.gather(*(proc.communicate() for proc in procs))
    server_cpu_s = _cpu_s(server.pid) - cpu
    records: list[dict[str, Any]] = []
    for proc, (out, _) in zip(procs, outputs, strict=True):
        if proc.returncode != 0:
            raise RuntimeError(f"a generator failed ({proc.returncode})")
        records.extend(json.loads(out))
    return records, server_cpu_s


def _median(values: list[float]) -> float | None:
    return round(sorted(values)[len(values) // 2], 3) if values else None


def summary(run: tuple[list[dict[str, Any]], float]) -> dict[str, Any]:
    """server_cpu_s: the server's CPU time over the run (user and system): against the span, whether it was saturated;
    over the events, what an event cost it, its start and end included."""
    records, server_cpu_s = run
    ok = [r for r in records if r["status"] == 200 and r["end"] == "done" and r["in_order"]]
    seen = [r for r in records if r["first"] is not None]
    t0 = min(r["started"] for r in records)
    t1 = max(r["last"] for r in seen) if seen else t0 + 1
    ttfe = [r["first"] - r["started"] for r in seen]
    ttfe_connected = [r["first"] - r["connected"] for r in seen]
    ttft = [r["third"] - r["started"] for r in seen if "third" in r]
    connect = [r["connected"] - r["started"] for r in records if r["connected"] is not None]
    durations = [r["last"] - r["first"] for r in seen]
    rates = sorted((r["count"] - 1) / (r["last"] - r["first"]) for r in seen if r["count"] > 2 and r["last"] > r["first"])
    median = rates[len(rates) // 2] if rates else 0.0
    bad: dict[str, int] = {}
    for r in records:
        if r not in ok:
            why = r["end"] or f"status {r['status']}" if r["in_order"] else "out of order"
            bad[why] = bad.get(why, 0) + 1
    return {
        "streams": len(records), "ok": len(ok), "bad": bad,
        "events_per_s": round(sum(r["count"] for r in records) / (t1 - t0)),
        "ttfe_ms": {"p50": _pct(ttfe, 0.5), "p90": _pct(ttfe, 0.9), "p99": _pct(ttfe, 0.99)},
        # Past 10 s only a listener whose accept queue overflowed (the client retransmitting its handshake) is seen.
        "ttfe_over_10s": sum(1 for t in ttfe if t > 10),
        # What a user waits for: the first piece of the reply's text (the third event: meta, the agent's start, it)
        "ttft_ms": {"p50": _pct(ttft, 0.5), "p99": _pct(ttft, 0.99)},
        "ttfe_from_connected_ms": {"p50": _pct(ttfe_connected, 0.5), "p99": _pct(ttfe_connected, 0.99)},
        "connect_ms": {"p50": _pct(connect, 0.5), "p99": _pct(connect, 0.99)},
        # Where the events/s goes: the run's span is the last first event (the ramp) plus the longest reply after it,
        # and a reply's length is its pace plus the wait for its first token and for its end (medians)
        "first_token_after_s": _median([r["third"] - r["first"] for r in seen if "third" in r]),
        "end_after_last_token_s": _median([r["end_gap"] for r in seen if "end_gap" in r]),
        "server_cpu_s": round(server_cpu_s, 2),
        "server_cpu_us_per_event": round(server_cpu_s / max(1, sum(r["count"] for r in records)) * 1e6, 2),
        "span_s": round(t1 - t0, 2), "last_first_event_s": round(max(r["first"] for r in seen) - t0, 2) if seen else None,
        "reply_s": {"p50": _median(durations), "max": round(max(durations, default=0.0), 2)},
        "slowest_rate_vs_median": round(rates[0] / median, 3) if rates and median else None,
    }


async def main_async(streams: int, generator_counts: list[int], profile: str = "",
                     env: dict[str, str] | None = None, chat: bool = False) -> dict[str, dict[str, Any]]:
    rows: dict[str, dict[str, Any]] = {}
    extra = {"GIMA_MAX_REPLIES_PER_USER": str(streams * 2)}  # one program's key, sized for its load
    extra.update(env or {})
    for generators in generator_counts:
        spied = profile and generators == generator_counts[0]
        async with bare(TOKENS_PER_S, WORDS, chat=chat) as b:
            rows[f"bare_{generators}gen"] = summary(await run_generators(
                b, streams, generators, f"{profile}/ten_thousand_bare.txt" if spied else ""))
        async with gima(TOKENS_PER_S, 1, words=WORDS, api_key=True, extra_env=extra) as g:
            rows[f"gima_{generators}gen"] = summary(await run_generators(
                g, streams, generators, f"{profile}/ten_thousand_gima.txt" if spied else ""))
    return rows


def verdicts(rows: dict[str, dict[str, Any]]) -> list[Verdict]:
    out = []
    for gen in sorted({name.split("_", 1)[1] for name in rows}):
        g, b = rows[f"gima_{gen}"], rows[f"bare_{gen}"]
        ratio = round(g["events_per_s"] / max(1, b["events_per_s"]), 3)
        out.append((f"[{gen}] events/s ratio {ratio}", ">= 1.0", ratio >= 1.0))
        gp99, bp99 = g["ttfe_ms"]["p99"] or 1e9, b["ttfe_ms"]["p99"] or 0
        fell_over = f"; bare's accept queue overflowed: {b['ttfe_over_10s']} streams waited > 10 s" \
            if b["ttfe_over_10s"] else ""
        out.append((f"[{gen}] TTFE p99 {gp99} ms vs bare {bp99} ms{fell_over}", "<= bare", gp99 <= bp99))
        starve = g["slowest_rate_vs_median"]
        out.append((f"[{gen}] slowest reply's rate / median {starve}", ">= 0.8",
                    isinstance(starve, float) and starve >= 0.8))
        out.append((f"[{gen}] gima streams with an error, a gap or no end: {g['streams'] - g['ok']}", "0",
                    g["streams"] == g["ok"]))
    return out


def _raise_open_files(streams: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = streams * 2 + 4096
    if hard != resource.RLIM_INFINITY:
        want = min(want, hard)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, want), hard))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--streams", type=int, default=10_000)
    parser.add_argument("--generators", type=int, nargs="*", default=[1, 2], help="generator process counts to run")
    parser.add_argument("--profile", default="", help="a directory: py-spy profiles of the first run's ramp")
    parser.add_argument("--env", action="append", default=[], help="NAME=VALUE for gima-server (repeatable)")
    parser.add_argument("--runs", type=int, default=1,
                        help="repeat the whole comparison; each target's verdict in each run, then how many passed")
    parser.add_argument("--baseline", choices=("bare", "chat"), default="bare",
                        help="chat: bench/bare.py as the chat baseline (signs in, checks, writes the exchange and the "
                             "final write before done), in the bare server's place")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--path", help=argparse.SUPPRESS)
    parser.add_argument("--first", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--token", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    _raise_open_files(args.streams)
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    if args.worker:
        json.dump(asyncio.run(_worker(args.port, args.path, args.token, args.first, args.streams)), sys.stdout)
        return
    if _TASKSET and os.environ.get("GIMA_BENCH_PINNED") != "1":  # this process (and its generators) on core 1
        os.environ["GIMA_BENCH_PINNED"] = "1"
        os.execv(_TASKSET, [_TASKSET, "-c", "1", sys.executable, "-m", "bench.ten_thousand", *sys.argv[1:]])
    began = time.monotonic()
    if args.profile:
        os.makedirs(args.profile, exist_ok=True)
    env = dict(item.split("=", 1) for item in args.env)
    tallies: list[list[Verdict]] = []
    for run in range(1, args.runs + 1):
        rows = asyncio.run(main_async(args.streams, args.generators, args.profile if run == 1 else "", env,
                                      args.baseline == "chat"))
        for name, row in rows.items():
            print(json.dumps({"run": run, "scenario": name, **row}))
        print(f"pinned: {'server core 0, load generator core 1' if _TASKSET else 'NO (taskset missing)'}; "
              f"{args.streams} streams at {TOKENS_PER_S} tokens/s; took {time.monotonic() - began:.0f} s")
        tallies.append(verdicts(rows))
        print_verdicts(tallies[-1])
    print_pass_counts(tallies)


if __name__ == "__main__":
    main()
