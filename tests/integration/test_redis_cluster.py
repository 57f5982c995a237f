"""GIMA_REDIS_MODE=cluster against a real three-master Redis Cluster: the server starts, is ready, streams, and
its keys spread over the masters (every key of one reply in one slot). The contract suites (reply log, locks,
limits, idempotency) run on the cluster too: tests/contract."""

from __future__ import annotations

import redis

from ..conftest import MakeClient, sign_up
from ..redis_cluster import RedisClusterSet


async def test_the_server_runs_on_a_cluster_and_a_replys_keys_share_one_slot(
    make_client: MakeClient, redis_cluster_url: str, redis_cluster_set: RedisClusterSet
) -> None:
    client = await make_client(redis_mode="cluster", redis_url=redis_cluster_url, demo_reply_words=10)
    ready = await client.get("/ready")
    assert ready.status == 200, await ready.text()
    users = [await sign_up(client, f"user{i}@example.com") for i in range(6)]
    message_ids = []
    for user in users:
        events, _ = await user.stream("spread me")
        assert events[-1].name == "done"
        message_ids.append(events[0].data["messageId"])
    holders: dict[str, set[int]] = {}
    for node in redis_cluster_set.nodes:
        with redis.Redis(port=node.port) as conn:
            for key in conn.scan_iter(match="gima:*"):
                holders.setdefault(key.decode(), set()).add(node.port)
    for message_id in message_ids:
        keys = [k for k in holders if "{" + message_id + "}" in k]
        assert len(keys) >= 3, keys  # log, info, text
        assert len({port for k in keys for port in holders[k]}) == 1  # one slot, so one master
    assert len({port for ports in holders.values() for port in ports}) > 1  # and the replies spread over masters
