"""Helpers for tests that run the real gima-server command as a process."""

from __future__ import annotations

import asyncio
import subprocess
from typing import Any

import aiohttp


async def wait_healthy(session: aiohttp.ClientSession, base: str, proc: subprocess.Popen[Any], timeout_s: float = 30) -> None:
    """Until /health answers 200; fails at once if the process has exited."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while loop.time() < deadline:
        assert proc.poll() is None, f"{base} exited with {proc.returncode}"
        try:
            async with session.get(f"{base}/health") as resp:
                if resp.status == 200:
                    return
        except aiohttp.ClientConnectionError:
            pass
        await asyncio.sleep(0.05)
    raise AssertionError(f"{base} did not become healthy")
