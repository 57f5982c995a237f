"""Where an idle stream's memory goes: tracemalloc inside a gima-server process holding N idle streams.

  python -m bench.idle_memory               # 2,000 idle streams, top 25 allocation sites per stream
  python -m bench.idle_memory --holders 5000 --top 40 --frames 3
  python -m bench.idle_memory --bare        # the same for bench/bare.py's idle streams

The server runs with `-X tracemalloc`; on SIGUSR1 it writes a snapshot. One snapshot with one stream open,
one with N more: the difference, divided by N, is what each idle stream holds, grouped by the line that
allocated it (RSS is measured by bench/paced.py; this says where it comes from).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
import tempfile
import tracemalloc
from pathlib import Path

from .common import free_port
from .load import _seed, _wait_healthy
from .paced import Server, read_stream


def _serve_with_snapshots(snapshot_dir: str, argv: list[str]) -> None:
    """In the server process: dump a snapshot on each SIGUSR1, then run the server as usual."""
    count = 0

    def dump(*_: object) -> None:
        nonlocal count
        count += 1
        tracemalloc.take_snapshot().dump(os.path.join(snapshot_dir, f"{count}.snap"))

    signal.signal(signal.SIGUSR1, dump)
    if argv[0] == "--bare":
        from . import bare

        sys.argv = ["bench.bare", *argv[1:]]
        bare.main()
        return
    from gima_server.cli import main

    sys.exit(main(argv))


async def _snapshot(pid: int, snapshot_dir: Path, n: int) -> tracemalloc.Snapshot:
    os.kill(pid, signal.SIGUSR1)
    return await snapshot_written(snapshot_dir, n)


async def snapshot_written(snapshot_dir: Path, n: int) -> tracemalloc.Snapshot:
    """The server's n-th snapshot, once it has written it whole."""
    path = snapshot_dir / f"{n}.snap"
    size = -1
    for _ in range(1200):
        await asyncio.sleep(0.5)
        if path.exists():
            if path.stat().st_size == size:  # written whole: a big snapshot takes seconds to pickle
                return tracemalloc.Snapshot.load(str(path))
            size = path.stat().st_size
    raise RuntimeError("no snapshot")


async def measure(holders: int, top: int, frames: int, baseline: bool) -> None:
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="bench-mem-") as tmp:
        tokens = await _seed(Path(tmp), 1)
        snaps = Path(tmp) / "snaps"
        snaps.mkdir()
        env = {k: v for k, v in os.environ.items() if not k.startswith("GIMA_")}
        env.update({"GIMA_DATA_DIR": tmp, "GIMA_LOG_LEVEL": "warning", "GIMA_RATE_LIMITS": "off",
                    "GIMA_DEMO_FIRST_TOKEN_MS": "600000", "GIMA_MAX_ACTIVE_REPLIES": "20000", "GIMA_DRAIN_S": "1"})
        which = ["--bare", "--tokens-per-s", "0.2"] if baseline else []
        proc = subprocess.Popen([sys.executable, "-X", f"tracemalloc={frames}", "-m", "bench.idle_memory", "--serve",
                                 str(snaps), *which, "--port", str(port)], env=env, stdout=subprocess.DEVNULL)
        try:
            await _wait_healthy(f"http://127.0.0.1:{port}", proc)
            if baseline:
                server, path = Server("bare", port, proc.pid, "/hold"), "/hold"
            else:
                server = Server("gima", port, proc.pid, "/api/chat/stream", tokens)
                first = await read_stream(server, 0, "POST", server.path, b'{"content":"hold this open"}', stop_after=1)
                assert first.status == 200 and first.message_id, first
                path = f"/api/chat/streams/{first.message_id}/events"
            warm = [asyncio.create_task(read_stream(server, 0, "GET", path, b"", stop_after=10**9)) for _ in range(200)]
            await asyncio.sleep(2.0)
            before = await _snapshot(proc.pid, snaps, 1)
            held = [asyncio.create_task(read_stream(server, 0, "GET", path, b"", stop_after=10**9))
                    for _ in range(holders)]
            await asyncio.sleep(max(3.0, holders / 1000))
            after = await _snapshot(proc.pid, snaps, 2)
            diff = after.compare_to(before, "traceback" if frames > 1 else "lineno")
            total = sum(d.size_diff for d in diff)
            print(f"{holders} idle streams: {total / holders:.0f} B per stream traced by tracemalloc")
            for stat in diff[:top]:
                where = " <- ".join(f"{Path(f.filename).name}:{f.lineno}" for f in stat.traceback)
                print(f"{stat.size_diff / holders:8.1f} B  {stat.count_diff / holders:5.2f} blocks  {where}")
            for task in warm + held:
                task.cancel()
            await asyncio.gather(*warm, *held, return_exceptions=True)
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:  # the bare server's held streams never end by themselves
                proc.kill()
                proc.wait(timeout=10)


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "--serve":
        _serve_with_snapshots(sys.argv[2], sys.argv[3:])
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--holders", type=int, default=2000)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--frames", type=int, default=1, help="traceback depth per allocation site")
    parser.add_argument("--bare", action="store_true", help="measure bench/bare.py's idle streams instead")
    args = parser.parse_args()
    asyncio.run(measure(args.holders, args.top, args.frames, args.bare))


if __name__ == "__main__":
    main()
