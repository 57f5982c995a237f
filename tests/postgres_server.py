"""A throwaway PostgreSQL cluster (initdb + pg_ctl) on a free port, started by the tests; never the shared one
on 5432. GIMA_TEST_POSTGRES_URL names a server to use instead (each test still gets a database of its own)."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator
from urllib.parse import urlsplit, urlunsplit

from .redis_server import free_port

_BIN_DIRS = sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)  # Debian keeps them off PATH


def _binary(name: str) -> str:
    found = shutil.which(name) or next((str(d / name) for d in _BIN_DIRS if (d / name).exists()), None)
    if found is None:
        raise RuntimeError(f"{name} is not installed (apt-get install postgresql; .ci/run does it)")
    return found


def _as_owner(argv: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root: under root (CI), run as the package's `postgres` user."""
    return ["runuser", "-u", "postgres", "--", *argv] if os.geteuid() == 0 else argv


@dataclass
class PostgresServer:
    port: int
    workdir: str = ""
    user: str = "gima"
    crash_safe: bool = False  # commits reach the OS before they are acknowledged: survives stop_server's kill

    @property
    def base_url(self) -> str:
        return f"postgresql://{self.user}@127.0.0.1:{self.port}"

    def start(self) -> None:
        self.workdir = tempfile.mkdtemp(prefix="gima-pg-")
        data = Path(self.workdir) / "data"
        if os.geteuid() == 0:
            owner = pwd.getpwnam("postgres")
            os.chown(self.workdir, owner.pw_uid, owner.pw_gid)
        subprocess.run(_as_owner([_binary("initdb"), "-D", str(data), "-U", self.user, "--auth=trust", "-E", "UTF8",
                                  "--locale=C.UTF-8", "--no-sync"]), check=True, stdout=subprocess.DEVNULL)
        self.start_server()

    def start_server(self) -> None:
        """Start the cluster's server (again, after stop_server: a restart with its data kept)."""
        options = (f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.workdir} -c fsync=off "
                   f"-c synchronous_commit={'on' if self.crash_safe else 'off'} -c full_page_writes=off "
                   "-c max_connections=300")
        subprocess.run(_as_owner([_binary("pg_ctl"), "-D", str(Path(self.workdir) / "data"), "-o", options, "-l",
                                  str(Path(self.workdir) / "log"), "-w", "-t", "60", "start"]),
                       check=True, stdout=subprocess.DEVNULL)

    def stop_server(self) -> None:
        """Stop the server at once (connections cut, the data kept), as a crash or a failover looks to clients."""
        subprocess.run(_as_owner([_binary("pg_ctl"), "-D", str(Path(self.workdir) / "data"), "-m", "immediate", "-w",
                                  "stop"]), check=True, stdout=subprocess.DEVNULL)

    def stop(self) -> None:
        if self.workdir:
            subprocess.run(_as_owner([_binary("pg_ctl"), "-D", str(Path(self.workdir) / "data"), "-m", "immediate",
                                      "stop"]), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            shutil.rmtree(self.workdir, ignore_errors=True)
            self.workdir = ""


def own_postgres() -> Iterator[str]:
    """The base URL (no database) of a server for as long as the generator runs: GIMA_TEST_POSTGRES_URL's, or
    a cluster of its own, removed after it."""
    given = os.environ.get("GIMA_TEST_POSTGRES_URL", "")
    if given:
        parts = urlsplit(given)
        yield urlunsplit((parts.scheme, parts.netloc, "", "", ""))  # each test makes a database of its own there
        return
    server = PostgresServer(free_port())
    server.start()
    try:
        yield server.base_url
    finally:
        server.stop()


async def fresh_database(base_url: str) -> str:
    """A new, empty database on the server; its URL."""
    import asyncpg

    name = f"gima_test_{uuid.uuid4().hex[:12]}"
    conn = await asyncpg.connect(f"{base_url}/postgres")
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return f"{base_url}/{name}"


async def drop_database(url: str) -> None:
    import asyncpg

    base, name = url.rsplit("/", 1)
    conn = await asyncpg.connect(f"{base}/postgres")
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()
