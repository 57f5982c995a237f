"""A chaos run: gima-server processes behind nginx with Redis, clients that stream, cut, resume and cancel, while
faults come one after another. Per fault: events lost or repeated (must be 0), replies that never ended, the
errors clients saw by code, and the time until a fresh reply succeeds again. Exits 1 on any loss.

  python -m bench.chaos                # 2 processes, 24 clients, each fault 4 s (about 1.5 minutes)
  python -m bench.chaos --short        # the form the test suite runs (tests/integration/test_chaos.py)

Faults: a process SIGKILLed (and restarted), Redis paused (SIGSTOP) and resumed, Redis killed and restarted
empty, every client connection cut mid-reply. Not yet: a slow upstream or Redis behind a TCP proxy, and store
faults from outside the process (a read-only SQLite file cannot be made as root; tests/integration/
test_store_faults.py covers the store's faults inside one process; PostgreSQL stopped is for a later run).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Awaitable, Callable

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.cluster import Cluster, start_cluster  # noqa: E402  - the same harness the scale-out tests use
from tests.postgres_server import PostgresServer, fresh_database  # noqa: E402
from tests.redis_sentinel import MASTER_NAME, SentinelSet  # noqa: E402
from tests.redis_server import RedisServer, free_port  # noqa: E402
from tests.upstream_fakes import FakeUpstream  # noqa: E402

RESUME_DEADLINE_S = 30.0


@dataclass
class Seen:
    """One reply as its client saw it, over its first stream and every resume."""

    phase: str
    message_id: str = ""
    last_id: int = 0
    ended: str = ""  # "done", or the error code of the final event
    gaps: int = 0
    repeats: int = 0
    snapshots: int = 0
    gap_names: Counter[str] = field(default_factory=Counter)  # the events that came after a gap
    errors: Counter[str] = field(default_factory=Counter)  # id-less error frames (backing_unavailable, …) and statuses

    def take(self, frame: dict[str, Any]) -> None:
        if frame.get("id") is None:
            if frame["event"] == "error":
                self.errors[frame["data"].get("code", "?")] += 1
            return
        event_id = int(frame["id"])
        terminal = frame["event"] in ("done", "error")
        if event_id <= self.last_id:
            self.repeats += 1
            return
        # Two jumps are the contract's, not a loss: an interrupted reply's end (an id above any its dead producer
        # could have used), and a snapshot (the whole text so far, when the log's start is gone: API.md, Resuming).
        if event_id != self.last_id + 1 and frame["event"] == "snapshot":
            self.snapshots += 1
        elif event_id != self.last_id + 1 and not (terminal and frame["data"].get("code") == "interrupted"):
            self.gaps += event_id - self.last_id - 1
            self.gap_names[frame["event"]] += 1
        self.last_id = event_id
        if frame["event"] == "meta":
            self.message_id = frame["data"]["messageId"]
        if terminal:
            self.ended = "done" if frame["event"] == "done" else frame["data"].get("code", "?")


def _frames(raw: str) -> list[dict[str, Any]]:
    out = []
    for block in raw.split("\n\n"):
        fields: dict[str, str] = {}
        for line in block.split("\n"):
            if line and not line.startswith(":") and ":" in line:
                key, _, value = line.partition(":")
                fields[key] = value.lstrip(" ")
        if "data" in fields:
            out.append({"id": fields.get("id"), "event": fields.get("event", "message"),
                        "data": json.loads(fields["data"])})
    return out


async def _read(resp: aiohttp.ClientResponse, seen: Seen, cut_after: int | None) -> bool:
    """Read a stream into seen; True when it was cut on purpose before its end."""
    buffer, count = "", 0
    async for chunk in resp.content.iter_any():
        buffer += chunk.decode()
        if "\n\n" not in buffer:
            continue
        complete, _, buffer = buffer.rpartition("\n\n")
        for frame in _frames(complete):
            seen.take(frame)
            count += 1
        if seen.ended:
            return False
        if cut_after is not None and count >= cut_after:
            return True
    return False


class Clients:
    def __init__(self, front: str, users: int, rng: random.Random) -> None:
        self.front = front
        self.users = users
        self.rng = rng
        self.tokens: list[str] = []
        self.replies: list[Seen] = []
        self.phase = "start"
        self.cut_all = False
        self.session: aiohttp.ClientSession | None = None

    async def sign_up(self) -> None:
        self.session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None, sock_connect=5))
        for i in range(self.users + 1):  # the last one only probes: its session never has a reply under way
            async with self.session.post(f"{self.front}/api/auth/signup", headers={"Origin": self.front},
                                         json={"email": f"chaos{i}@example.com", "password": "a chaos password"}) as r:
                assert r.status == 201, await r.text()
                self.tokens.append((await r.json())["accessToken"])
            self.session.cookie_jar.clear()

    async def user(self, i: int, until: float) -> None:
        n = 0
        while time.monotonic() < until:
            n += 1
            await self.one_reply(i, f"user {i}, message {n}")

    async def one_reply(self, i: int, content: str) -> None:
        assert self.session is not None
        seen = Seen(self.phase)
        self.replies.append(seen)
        auth = {"Authorization": f"Bearer {self.tokens[i]}"}
        cut = 1 + self.rng.randrange(8) if self.cut_all or self.rng.random() < 0.3 else None
        cancel = self.rng.random() < 0.1
        try:
            async with self.session.post(f"{self.front}/api/chat/stream", json={"content": content},
                                         headers=auth) as resp:
                if resp.status != 200:
                    seen.errors[f"HTTP {resp.status}"] += 1
                    seen.ended = f"refused {resp.status}"  # nothing started: nothing to lose
                    return
                await _read(resp, seen, cut)
        except (TimeoutError, aiohttp.ClientError) as exc:
            seen.errors[type(exc).__name__] += 1
        if cancel and seen.message_id and not seen.ended:
            try:
                async with self.session.post(f"{self.front}/api/chat/streams/{seen.message_id}/cancel",
                                             headers=auth) as resp:
                    await resp.read()
            except aiohttp.ClientError:
                pass
        await self._resume(seen, auth)

    async def _resume(self, seen: Seen, auth: dict[str, str]) -> None:
        assert self.session is not None
        deadline = time.monotonic() + RESUME_DEADLINE_S
        while not seen.ended and seen.message_id and time.monotonic() < deadline:
            try:
                async with self.session.get(f"{self.front}/api/chat/streams/{seen.message_id}/events",
                                            headers={**auth, "Last-Event-ID": str(seen.last_id)}) as resp:
                    if resp.status == 204:
                        seen.ended = seen.ended or "no more (204)"
                        return
                    if resp.status != 200:
                        seen.errors[f"HTTP {resp.status}"] += 1
                    else:
                        await _read(resp, seen, 1 + self.rng.randrange(8) if self.cut_all else None)
            except (TimeoutError, aiohttp.ClientError) as exc:
                seen.errors[type(exc).__name__] += 1
            if not seen.ended:
                await asyncio.sleep(0.2)

    async def recovered_after(self, since: float, limit_s: float = 60) -> float | None:
        """Seconds from since until a fresh reply (of a user with nothing under way) streams its first token
        (None: not within limit_s)."""
        probe = 0
        while time.monotonic() - since < limit_s:
            probe += 1
            seen = Seen("probe")
            assert self.session is not None
            try:
                async with self.session.post(f"{self.front}/api/chat/stream", json={"content": f"probe {probe}"},
                                             headers={"Authorization": f"Bearer {self.tokens[-1]}"}) as resp:
                    if resp.status == 200:
                        await _read(resp, seen, 2)  # meta and the first delta
            except (TimeoutError, aiohttp.ClientError):
                pass
            if seen.last_id >= 2 and not seen.ended:
                return round(time.monotonic() - since, 2)
            await asyncio.sleep(0.2)
        return None


class DelayProxy:
    """A TCP proxy that can slow a link: while delay_s > 0, every chunk waits that long in each direction."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = free_port()
        self.delay_s = 0.0
        self._server: asyncio.base_events.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._client, "127.0.0.1", self.port)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.close()
            return
        try:
            await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer), return_exceptions=True)
        except asyncio.CancelledError:  # the run is over: a connection task of start_server must not end raising
            writer.close()
            up_writer.close()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                if self.delay_s:
                    await asyncio.sleep(self.delay_s)
                writer.write(data)
                await writer.drain()
        finally:
            writer.close()


@dataclass
class Fault:
    name: str
    inject: Callable[[], Awaitable[None]]
    heal: Callable[[], Awaitable[None]]


def _faults(cluster: Cluster, redis: RedisServer, clients: Clients, links: dict[str, DelayProxy],
            postgres: PostgresServer | None, sentinels: SentinelSet | None = None) -> list[Fault]:
    async def nothing() -> None:
        return None

    async def kill_process() -> None:
        cluster.kill(0)

    async def restart_process() -> None:
        await asyncio.to_thread(cluster.restart, 0)

    async def pause_redis() -> None:
        assert redis.proc is not None
        os.kill(redis.proc.pid, signal.SIGSTOP)

    async def resume_redis() -> None:
        assert redis.proc is not None
        os.kill(redis.proc.pid, signal.SIGCONT)

    async def kill_redis() -> None:
        assert redis.proc is not None
        redis.proc.kill()
        redis.proc.wait(timeout=10)

    async def restart_redis() -> None:
        await asyncio.to_thread(redis.start)

    async def cut_clients() -> None:
        clients.cut_all = True

    async def stop_cutting() -> None:
        clients.cut_all = False

    def slow(link: str, delay_s: float) -> Callable[[], Awaitable[None]]:
        async def set_delay() -> None:
            links[link].delay_s = delay_s

        return set_delay

    async def stop_postgres() -> None:
        assert postgres is not None
        await asyncio.to_thread(postgres.stop_server)

    async def start_postgres() -> None:
        assert postgres is not None
        await asyncio.to_thread(postgres.start_server)

    store_faults = [Fault("PostgreSQL stopped", stop_postgres, start_postgres)] if postgres is not None else []

    async def fail_over() -> None:
        assert sentinels is not None
        await asyncio.to_thread(sentinels.kill_master_and_wait_for_promotion)

    if sentinels is not None:  # Redis is the sentinels' master: its faults are a failover (no proxy in between)
        return [Fault("none (baseline)", nothing, nothing), Fault("a process SIGKILLed", kill_process, restart_process),
                Fault("the Redis master SIGKILLed, a replica promoted", fail_over, nothing),
                Fault("the upstream slowed (+600 ms a round trip)", slow("upstream", 0.3), slow("upstream", 0.0)),
                *store_faults, Fault("client connections cut mid-reply", cut_clients, stop_cutting)]

    return [Fault("none (baseline)", nothing, nothing), Fault("a process SIGKILLed", kill_process, restart_process),
            Fault("Redis paused (SIGSTOP)", pause_redis, resume_redis),
            Fault("Redis killed, restarted empty", kill_redis, restart_redis),
            Fault("Redis slowed (+100 ms a round trip)", slow("redis", 0.05), slow("redis", 0.0)),
            Fault("the upstream slowed (+600 ms a round trip)", slow("upstream", 0.3), slow("upstream", 0.0)),
            *store_faults,
            Fault("client connections cut mid-reply", cut_clients, stop_cutting)]


async def run(workdir: Path, processes: int = 2, users: int = 24, fault_s: float = 4.0, seed: int = 7,
              store: str = "postgres", sentinel: bool = False) -> list[dict[str, Any]]:
    from aiohttp import web

    redis = RedisServer(free_port())
    redis.start()
    upstream = FakeUpstream("openai")
    upstream.faults.tokens = [f"word{n} " for n in range(40)]
    upstream.faults.token_delay_s = 0.03
    runner = web.AppRunner(upstream.app)
    await runner.setup()
    upstream_port = free_port()
    await web.TCPSite(runner, "127.0.0.1", upstream_port).start()
    links = {"redis": DelayProxy(redis.port), "upstream": DelayProxy(upstream_port)}
    for link in links.values():
        await link.start()
    postgres = PostgresServer(free_port()) if store == "postgres" else None
    store_url = ""
    if postgres is not None:
        await asyncio.to_thread(postgres.start)
        store_url = await fresh_database(postgres.base_url)
    env = {"agent": "openai", "openai_base_url": f"http://127.0.0.1:{links['upstream'].port}/v1",
           "openai_model": "chaos", "store_retry_s": "20", "upstream_first_token_timeout_s": "15"}
    proxied: RedisServer | None = RedisServer(links["redis"].port)  # the processes reach Redis through the proxy
    sentinels: SentinelSet | None = None
    if sentinel:
        sentinels = SentinelSet(workdir / "sentinel")
        await asyncio.to_thread(sentinels.start)
        env.update(redis_url=sentinels.url, redis_mode="sentinel", redis_sentinel_master=MASTER_NAME)
        proxied = None
    clients: Clients | None = None
    cluster: Cluster | None = None
    rows = []
    try:
        cluster = await asyncio.to_thread(start_cluster, workdir / "cluster", proxied, processes, postgres_url=store_url,
                                          **env)
        clients = Clients(cluster.front, users, random.Random(seed))
        await clients.sign_up()
        for fault in _faults(cluster, redis, clients, links, postgres, sentinels):
            clients.phase = fault.name
            until = time.monotonic() + fault_s
            load = [asyncio.create_task(clients.user(i, until)) for i in range(users)]
            await asyncio.sleep(fault_s / 4)
            await fault.inject()
            await asyncio.sleep(fault_s / 2)
            await fault.heal()
            healed = time.monotonic()
            recover = await clients.recovered_after(healed)
            await asyncio.gather(*load)
            rows.append(_row(fault.name, [s for s in clients.replies if s.phase == fault.name], recover))
    finally:
        if clients is not None and clients.session is not None:
            await clients.session.close()
        if cluster is not None:
            cluster.stop()
        for link in links.values():
            await link.close()
        await runner.cleanup()
        redis.stop()
        if sentinels is not None:
            sentinels.stop()
        if postgres is not None:
            postgres.stop()
    return rows


def _row(name: str, replies: list[Seen], recover: float | None) -> dict[str, Any]:
    errors: Counter[str] = Counter()
    ends: Counter[str] = Counter()
    for seen in replies:
        errors.update(seen.errors)
        ends[seen.ended or "NOT ENDED"] += 1
    after_gaps: Counter[str] = Counter()
    for seen in replies:
        after_gaps.update(seen.gap_names)
    return {"fault": name, "replies": len(replies), "lost": sum(s.gaps for s in replies),
            "after_a_gap": dict(after_gaps), "snapshots": sum(s.snapshots for s in replies),
            "repeated": sum(s.repeats for s in replies), "not_ended": ends.get("NOT ENDED", 0),
            "ends": dict(ends), "errors_seen": dict(errors), "recovered_after_s": recover}


def failures(rows: list[dict[str, Any]]) -> list[str]:
    return [f"{r['fault']}: {r['lost']} lost, {r['repeated']} repeated, {r['not_ended']} not ended"
            for r in rows if r["lost"] or r["repeated"] or r["not_ended"] or r["recovered_after_s"] is None]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--short", action="store_true", help="12 clients, 3 s per fault")
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--sentinel", action="store_true",
                        help="Redis as a master, a replica and three sentinels; its fault is a failover")
    parser.add_argument("--store", choices=("postgres", "sqlite"), default="postgres",
                        help="postgres (its own throwaway cluster, stopped as a fault) or sqlite (no store fault)")
    args = parser.parse_args()
    users, fault_s = (12, 3.0) if args.short else (24, 4.0)
    with tempfile.TemporaryDirectory(prefix="gima-chaos-") as tmp:
        rows = asyncio.run(run(Path(tmp), args.processes, users, fault_s, store=args.store, sentinel=args.sentinel))
    for row in rows:
        print(json.dumps(row))
    bad = failures(rows)
    print("PASS: no event lost or repeated, every reply ended" if not bad else "FAIL: " + "; ".join(bad))
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
