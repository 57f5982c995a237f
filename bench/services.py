"""Throwaway PostgreSQL and Redis Sentinel for the benches, pinned to the load generator's core (core 1), so that
the server under test keeps core 0 to itself. The same way the tests start them (tests/postgres_server.py,
tests/integration/test_redis_sentinel.py), with PostgreSQL's default durability (fsync, synchronous commit)."""

from __future__ import annotations

import asyncio
import os
import pwd
import shutil
import subprocess
import tempfile
from contextlib import asynccontextmanager
from pathlib import Path
from typing import AsyncIterator

from .common import free_port

_PG_BIN = sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)


def _pg(name: str) -> str:
    found = shutil.which(name) or next((str(d / name) for d in _PG_BIN if (d / name).exists()), None)
    if found is None:
        raise RuntimeError(f"{name} is not installed (apt-get install postgresql)")
    return found


def _pinned(argv: list[str]) -> list[str]:
    taskset = shutil.which("taskset")
    return [taskset, "-c", "1", *argv] if taskset else argv


def _as_owner(argv: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *argv] if os.geteuid() == 0 else argv


async def _run(argv: list[str], check: bool = True) -> None:
    proc = await asyncio.create_subprocess_exec(*argv, stdout=subprocess.DEVNULL)
    if await proc.wait() != 0 and check:
        raise RuntimeError(f"{argv[0]} failed with {proc.returncode}")


@asynccontextmanager
async def postgres() -> AsyncIterator[str]:
    """The URL of an empty database on a cluster of its own."""
    port = free_port()
    work = Path(tempfile.mkdtemp(prefix="bench-pg-"))
    if os.geteuid() == 0:
        owner = pwd.getpwnam("postgres")
        os.chown(work, owner.pw_uid, owner.pw_gid)
    data = work / "data"
    await _run(_as_owner([_pg("initdb"), "-D", str(data), "-U", "gima", "--auth=trust", "-E", "UTF8",
                          "--locale=C.UTF-8"]))
    options = f"-p {port} -c listen_addresses=127.0.0.1 -k {work} -c max_connections=200"
    await _run(_pinned(_as_owner([_pg("pg_ctl"), "-D", str(data), "-o", options, "-l", str(work / "log"), "-w",
                                  "start"])))
    try:
        import asyncpg

        conn = await asyncpg.connect(f"postgresql://gima@127.0.0.1:{port}/postgres")
        await conn.execute("CREATE DATABASE bench")
        await conn.close()
        yield f"postgresql://gima@127.0.0.1:{port}/bench"
    finally:
        await _run(_as_owner([_pg("pg_ctl"), "-D", str(data), "-m", "fast", "stop"]), check=False)
        shutil.rmtree(work, ignore_errors=True)


@asynccontextmanager
async def sentinel(master_name: str = "gima") -> AsyncIterator[str]:
    """A master, a replica and three sentinels; the URL naming the sentinels (GIMA_REDIS_MODE=sentinel)."""
    binary = shutil.which("redis-server") or "redis-server"
    work = Path(tempfile.mkdtemp(prefix="bench-sentinel-"))
    procs: list[subprocess.Popen[bytes]] = []

    def start(name: str, *extra: str) -> int:
        port = free_port()
        (work / name).mkdir()
        procs.append(subprocess.Popen(_pinned([binary, *extra, "--port", str(port), "--bind", "127.0.0.1", "--save",
                                               "", "--appendonly", "no", "--dir", str(work / name)]),
                                      stdout=subprocess.DEVNULL))
        return port

    try:
        master = start("master")
        await asyncio.sleep(0.3)
        start("replica", "--replicaof", "127.0.0.1", str(master))
        ports = []
        for i in range(3):
            conf = work / f"sentinel{i}.conf"
            conf.write_text(f"sentinel monitor {master_name} 127.0.0.1 {master} 2\n"
                            f"sentinel down-after-milliseconds {master_name} 5000\n")
            ports.append(start(f"sentinel{i}", str(conf), "--sentinel"))
        await asyncio.sleep(1.5)  # the sentinels find the replica and each other
        yield "redis://" + ",".join(f"127.0.0.1:{p}" for p in ports) + "/0"
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(timeout=10)
        shutil.rmtree(work, ignore_errors=True)
