"""The one place that knows Redis's topology: a client for a single server or for the master that Sentinel names.
Everything above it holds a `redis.asyncio.Redis` and never asks which one."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

from .config import Settings
from .late_loop import responsive_timeout

if TYPE_CHECKING:
    from redis.asyncio import Redis
    from redis.asyncio.connection import AbstractConnection

# A read waits out the loop's own lateness for at most this many socket timeouts (late_loop.py).
_LATE_LOOP_READS = 8
_despite_late_loop: dict[type[AbstractConnection], type[AbstractConnection]] = {}  # bound: redis-py's few classes


def connect(settings: Settings, socket_timeout: float, *, blocking_pool: bool = False) -> Redis:
    """A client with this socket timeout. blocking_pool: a burst waits for a free connection (the app's shared
    client) instead of failing at the pool's cap."""
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff
    from redis.exceptions import ConnectionError as RedisConnectionError

    common: dict[str, Any] = {"socket_timeout": socket_timeout, "socket_connect_timeout": settings.redis_timeout_s}
    if blocking_pool:
        # After a Redis restart every pooled connection is dead and fails its next command: that command is sent
        # again once on a new connection, or each would be a false outage (locks and limits falling back, readers
        # told "backing_unavailable"). Timeouts are not retried: a slow Redis is an outage to report at once.
        common.update(max_connections=settings.redis_max_connections,
                      retry=Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,)),
                      retry_on_error=[RedisConnectionError])
    client = _client(settings, common, blocking_pool)
    if settings.redis_mode == "cluster":  # its nodes, made now and as the cluster names them, from these kwargs
        kwargs = client.nodes_manager.connection_kwargs  # type: ignore[attr-defined]
        kwargs["connection_class"] = reads_despite_late_loop(kwargs["connection_class"])
        for node in client.startup_nodes:  # type: ignore[attr-defined]
            node.connection_class = kwargs["connection_class"]
    else:
        client.connection_pool.connection_class = reads_despite_late_loop(client.connection_pool.connection_class)
    return client


def reads_despite_late_loop(base: type[AbstractConnection]) -> type[AbstractConnection]:
    """This connection class, with a socket timeout on reads that does not count the time the event loop itself was
    late (late_loop.py): a stalled loop is not Redis failing (a false outage falls locks and limits back to this
    process and resends every running reply's log). Whatever class the pool picked (TLS, a Unix socket, Sentinel's)."""
    if base in _despite_late_loop.values():
        return base
    if base in _despite_late_loop:
        return _despite_late_loop[base]
    from redis.exceptions import TimeoutError as RedisTimeoutError

    class ReadsDespiteLateLoop(base):  # type: ignore[valid-type,misc]
        async def read_response(self, disable_decoding: bool = False, timeout: float | None = None, *,  # noqa: ASYNC109 (redis-py's signature)
                                disconnect_on_error: bool = True, push_request: bool | None = False) -> Any:
            read = super().read_response
            if timeout is not None or not disconnect_on_error or not self.socket_timeout:
                return await read(disable_decoding, timeout, disconnect_on_error=disconnect_on_error,
                                  push_request=push_request)
            try:
                async with responsive_timeout(self.socket_timeout, self.socket_timeout * _LATE_LOOP_READS):
                    # math.inf: no timeout of redis-py's own; cancelled by ours, it disconnects (a read cut mid-way)
                    return await read(disable_decoding, math.inf, push_request=push_request)
            except TimeoutError:
                where = getattr(self, "path", "") or f"{getattr(self, 'host', '?')}:{getattr(self, 'port', '?')}"
                raise RedisTimeoutError(f"Timeout reading from {where}") from None  # a Unix socket has a path

    ReadsDespiteLateLoop.__name__ = ReadsDespiteLateLoop.__qualname__ = f"{base.__name__}DespiteLateLoop"
    _despite_late_loop[base] = ReadsDespiteLateLoop
    return ReadsDespiteLateLoop


def _client(settings: Settings, common: dict[str, Any], blocking_pool: bool) -> Redis:
    from redis.asyncio import BlockingConnectionPool, Redis

    if settings.redis_mode == "sentinel":
        from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool

        class BlockingSentinelPool(SentinelConnectionPool, BlockingConnectionPool):
            """Sentinel's pool (the master asked of the sentinels) that queues at its cap like single mode's."""

        class SentinelMaster(Redis):
            """The master's client; closing it closes the clients of the sentinels it asks (nobody else holds them)."""

            async def aclose(self, close_connection_pool: bool | None = None) -> None:
                await super().aclose(close_connection_pool)
                pool = self.connection_pool
                if isinstance(pool, SentinelConnectionPool):
                    await pool.sentinel_manager.aclose()

        sentinels, db, password = sentinel_addresses(settings.redis_url)
        # The master's address is asked of the sentinels on every new connection, so a failover is followed.
        manager = Sentinel(sentinels, sentinel_kwargs={"socket_timeout": settings.redis_timeout_s * 4}, db=db,
                           password=password, **common)
        if blocking_pool:
            queued: Redis = manager.master_for(settings.redis_sentinel_master, redis_class=SentinelMaster,
                                               connection_pool_class=BlockingSentinelPool, timeout=_pool_wait_s(settings))
            return queued
        master: Redis = manager.master_for(settings.redis_sentinel_master, redis_class=SentinelMaster)
        return master
    if settings.redis_mode == "cluster":
        from redis.asyncio.cluster import ClusterNode, RedisCluster

        nodes, _, password = node_addresses(settings.redis_url, 6379)
        # Per node, redis-py's cluster pool has no waiting queue: at its cap a command fails (MaxConnectionsError)
        # and is treated as Redis failing; size GIMA_REDIS_MAX_CONNECTIONS for the burst.
        cluster: Redis = RedisCluster(startup_nodes=[ClusterNode(host, port) for host, port in nodes],  # type: ignore[assignment]
                                      password=password, **common)
        return cluster
    if blocking_pool:
        # A burst of requests queues for a free connection: redis-py's default pool raises MaxConnectionsError at
        # its 101st concurrent command. The wait is not Redis being slow, so it is longer than one command may take.
        pool = BlockingConnectionPool.from_url(settings.redis_url, timeout=_pool_wait_s(settings), **common)
        return Redis.from_pool(pool)
    return Redis.from_url(settings.redis_url, **common)


def _pool_wait_s(settings: Settings) -> float:
    return max(2.0, settings.redis_timeout_s * 4)


def sentinel_addresses(url: str) -> tuple[list[tuple[str, int]], int, str | None]:
    """`redis://[:password@]h1:26379,h2:26379/0` → the sentinels, the database number and the master's password."""
    return node_addresses(url, 26379)


def node_addresses(url: str, default_port: int) -> tuple[list[tuple[str, int]], int, str | None]:
    """`redis://[:password@]h1:p1,h2:p2/0` → the hosts, the database number and the password."""
    parts = urlsplit(url)
    netloc = parts.netloc
    password = None
    if "@" in netloc:
        credentials, netloc = netloc.rsplit("@", 1)
        password = unquote(credentials.split(":", 1)[1]) if ":" in credentials else unquote(credentials)
    sentinels = []
    for host_port in netloc.split(","):
        host, _, port = host_port.rpartition(":")
        sentinels.append((host or host_port, int(port) if port.isdigit() and host else default_port))
    path = parts.path.strip("/")
    return sentinels, int(path) if path.isdigit() else 0, password or None
