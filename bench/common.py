"""Helpers shared by the bench scripts: start a real gima-server process, read its memory, sign users up."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from typing import AsyncIterator

import aiohttp


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


@contextlib.asynccontextmanager
async def running_server(**env: str) -> AsyncIterator[tuple[str, subprocess.Popen[bytes]]]:
    """A real gima-server on 127.0.0.1 with its own data dir; stopped with SIGTERM at the end."""
    port = free_port()
    with tempfile.TemporaryDirectory() as data_dir:
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("GIMA_")}
        # Many sign-ups from one address would trip the auth limit: the bench measures chat, not that.
        full_env.update(
            {"GIMA_DATA_DIR": data_dir, "GIMA_LOG_LEVEL": "warning", "GIMA_RATE_LIMITS": "auth=100000/min/100000", **env}
        )
        proc = subprocess.Popen(
            [sys.executable, "-m", "gima_server", "serve", "--port", str(port)],
            env=full_env,
            stdout=subprocess.DEVNULL,
        )
        base = f"http://127.0.0.1:{port}"
        try:
            async with aiohttp.ClientSession() as session:
                deadline = time.monotonic() + 30
                while True:
                    try:
                        async with session.get(f"{base}/health") as resp:
                            if resp.status == 200:
                                break
                    except aiohttp.ClientConnectionError:
                        if time.monotonic() > deadline:
                            raise
                    await asyncio.sleep(0.05)
            yield base, proc
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=60)


async def sign_up_many(session: aiohttp.ClientSession, base: str, count: int) -> list[str]:
    """One user (and so one session) per concurrent reply: the server allows one active reply per session."""

    async def one(i: int) -> str:
        body = {"email": f"bench{i}@example.com", "password": "bench password"}
        async with session.post(f"{base}/api/auth/signup", json=body) as resp:
            assert resp.status == 201, await resp.text()
            return str((await resp.json())["accessToken"])

    return list(await asyncio.gather(*(one(i) for i in range(count))))


async def start_py_spy(pid: int, path: str, rate_hz: int) -> subprocess.Popen[bytes]:
    """py-spy sampling a server process into `path` (--format raw: flamegraph.pl input, bench/profile_steps.py)."""
    spy = subprocess.Popen(["py-spy", "record", "-p", str(pid), "-r", str(rate_hz), "--format", "raw", "-o", path,
                            "--nonblocking"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    await asyncio.sleep(1.0)  # attached before the phase starts
    return spy


def stop_py_spy(spy: subprocess.Popen[bytes] | None) -> None:
    """SIGINT makes py-spy write its profile; wait until it has."""
    if spy is not None:
        spy.send_signal(signal.SIGINT)
        spy.wait(timeout=60)


Verdict = tuple[str, str, bool]  # (what was measured, the target, whether it met it)


def print_verdicts(verdicts: list[Verdict]) -> None:
    for what, target, ok in verdicts:
        print(f"{'PASS' if ok else 'FAIL'}  {what}  (target {target})", flush=True)


def print_pass_counts(runs: list[list[Verdict]]) -> None:
    """Each target's count of passes over several runs of one comparison: this machine's speed moves between
    minutes, and a single run's verdict can flip on unchanged code."""
    if len(runs) < 2 or any(len(run) != len(runs[0]) for run in runs):
        return
    print(f"over {len(runs)} runs (a verdict is its count, not one run):")
    for line, (what, target, _) in enumerate(runs[0]):
        passed = sum(run[line][2] for run in runs)
        # the target without this run's figures: "[1gen] events/s ratio 0.93" -> "[1gen] events/s ratio"
        print(f"{passed} of {len(runs)} PASS  {re.split(r' [0-9]', what, maxsplit=1)[0]}  (target {target})")
