"""A fallback on one process is resumable from another: two real processes, one Redis, behind nginx."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import aiohttp
import pytest

from ..cluster import Cluster, start_cluster
from ..redis_server import RedisServer
from ..sse import parse_sse, read_until
from ..upstream_fakes import DEFAULT_TOKENS, FakeUpstream
from .test_scale_out import sign_up

pytestmark = pytest.mark.slow


@pytest.fixture
def made_clusters() -> Iterator[list[Cluster]]:
    made: list[Cluster] = []
    yield made
    for cluster in made:
        cluster.stop()


async def test_a_fallback_reply_resumes_from_the_other_process(
    tmp_path: Path, aiohttp_server: Any, redis_server: RedisServer, made_clusters: list[Cluster],
) -> None:
    fast, careful = FakeUpstream("openai"), FakeUpstream("openai")
    fast.faults.status = 500
    careful.faults.token_delay_s = 0.05
    fast_server, careful_server = await aiohttp_server(fast.app), await aiohttp_server(careful.app)
    agents = tmp_path / "agents.toml"
    agents.write_text(f"""
[agents.fast]
kind = "openai"
base_url = "http://127.0.0.1:{fast_server.port}/v1"
model = "big"
default = true
fallback = ["careful"]
[agents.careful]
kind = "openai"
base_url = "http://127.0.0.1:{careful_server.port}/v1"
model = "small"
""")
    cluster = start_cluster(tmp_path / "cluster", redis_server, 2, agents_file=str(agents),
                            upstream_max_retries="0")
    made_clusters.append(cluster)
    async with aiohttp.ClientSession() as http:
        user = await sign_up(http, cluster.front, "alice@example.com")
        resp = await http.post(f"{cluster.base(0)}/api/chat/stream", json={"content": "tides"}, headers=user.headers)
        assert resp.status == 200
        seen = await read_until(resp, lambda events: sum(e.name == "delta" for e in events) >= 2)
        resp.close()  # the client is cut mid-reply, after the move to the fallback
        assert [e.name for e in seen[:2]] == ["meta", "model"]
        assert seen[1].data == {"model": "careful", "fallbackFrom": "fast", "reason": "upstream_unavailable"}
        last = seen[-1].id
        async with http.get(f"{cluster.base(1)}/api/chat/streams/{seen[0].data['messageId']}/events",
                            headers={**user.headers, "Last-Event-ID": str(last)}) as again:
            assert again.status == 200
            rest, _ = parse_sse(await again.read())
        events = seen + rest
        assert [e.id for e in events] == list(range(1, len(events) + 1))  # nothing lost or repeated
        assert events[-1].name == "done" and events[-1].data["content"] == "".join(DEFAULT_TOKENS)
        assert "".join(e.data["text"] for e in events if e.name == "delta") == "".join(DEFAULT_TOKENS)
        async with http.get(f"{cluster.front}/api/chats/{seen[0].data['chatId']}/messages",
                            headers=user.headers) as stored:
            reply = (await stored.json())["messages"][-1]
        assert reply["model"] == "careful" and reply["status"] == "complete"
        assert [r["model"] for r in careful.requests] == ["small"] and len(fast.requests) == 1
