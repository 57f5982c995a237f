"""The npm packages under tests/js, installed once per test session, and a way to run a script with Node."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

JS_DIR = Path(__file__).resolve().parent / "js"


def install_js_clients() -> Path:
    """npm ci into tests/js when its node_modules is missing or older than the lock file; a missing Node fails."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        raise RuntimeError("Node.js and npm are needed for the AI SDK tests (apt-get install nodejs npm; .ci/run does it)")
    marker = JS_DIR / "node_modules" / ".package-lock.json"
    lock = JS_DIR / "package-lock.json"
    if not marker.exists() or marker.stat().st_mtime < lock.stat().st_mtime:
        subprocess.run([npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=JS_DIR, check=True, timeout=300)
    return JS_DIR


async def run_node(script: str, *args: str, timeout_s: float = 30, **env: str) -> dict[str, Any]:
    """Run tests/js/<script> with the arguments; its last stdout line is JSON. A non-zero exit fails with its stderr."""
    proc = await asyncio.create_subprocess_exec(
        "node", str(JS_DIR / script), *args, cwd=JS_DIR, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, **env})
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout_s)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    assert proc.returncode == 0, f"{script} {args[2:]} failed: {err.decode()[-3000:]}"
    result: dict[str, Any] = json.loads(out.decode().strip().splitlines()[-1])
    return result
