"""Real wire formats: gima-server against fake OpenAI-compatible and Anthropic servers, faults included."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from ..conftest import Api, MakeClient, sign_up
from ..sse import parse_sse, read_until
from ..upstream_fakes import DEFAULT_TOKENS, FakeUpstream

FAST_LIMITS = {"upstream_first_token_timeout_s": 1.0, "upstream_total_timeout_s": 2.0, "breaker_cooldown_s": 0.5}


async def _setup(
    make_client: MakeClient, aiohttp_server: Any, kind: str, **settings: Any
) -> tuple[FakeUpstream, TestClient, Api]:
    fake = FakeUpstream(kind)
    server = await aiohttp_server(fake.app)
    url = f"http://127.0.0.1:{server.port}"
    limits = {**FAST_LIMITS, **settings}
    client = await make_client(agent=kind, **{f"{kind}_base_url": url, f"{kind}_api_key": "test-key"}, **limits)
    return fake, client, await sign_up(client, "alice@example.com")


def _text(events: list[Any]) -> str:
    return "".join(e.data["text"] for e in events if e.name == "delta")


@pytest.mark.parametrize("kind", ["openai", "anthropic"])
async def test_a_normal_reply_streams_and_is_stored(make_client: MakeClient, aiohttp_server: Any, kind: str) -> None:
    fake, client, alice = await _setup(make_client, aiohttp_server, kind)
    events, resp = await alice.stream("How do tides work?")
    assert [e.name for e in events][:2] == ["meta", "agent"] and events[-1].name == "done"
    assert events[-1].data["content"] == "".join(DEFAULT_TOKENS) == _text(events)
    assert {e.data["agent"] for e in events if e.name in ("agent", "delta")} == {"assistant"}
    stored = (await alice.messages(events[0].data["chatId"]))[-1]
    assert stored["status"] == "complete" and stored["content"] == "".join(DEFAULT_TOKENS)
    assert stored["usage"]["outputTokens"] == len(DEFAULT_TOKENS) and stored["usage"]["inputTokens"] > 0
    request, headers = fake.requests[0], fake.headers[0]
    assert request["stream"] is True and request["messages"][-1] == {"role": "user", "content": "How do tides work?"}
    assert headers["traceparent"].split("-")[1] == resp.headers["X-Trace-Id"]  # the trace follows the reply upstream
    if kind == "openai":
        assert headers["Authorization"] == "Bearer test-key"
    else:
        assert headers["x-api-key"] == "test-key" and headers["anthropic-version"] == "2023-06-01"


@pytest.mark.parametrize("suffix", ["/v1", "/v1/"])
async def test_a_base_url_ending_in_v1_is_the_same_upstream(make_client: MakeClient, aiohttp_server: Any, suffix: str) -> None:
    """Ollama, vLLM, LiteLLM and OpenAI document their base as http://host/v1; the server must not call /v1/v1."""
    fake = FakeUpstream("openai")
    server = await aiohttp_server(fake.app)
    client = await make_client(agent="openai", openai_base_url=f"http://127.0.0.1:{server.port}{suffix}",
                               openai_api_key="test-key", **FAST_LIMITS)
    alice = await sign_up(client, "alice@example.com")
    events, _ = await alice.stream("Hello?")
    assert events[-1].name == "done" and events[-1].data["content"] == "".join(DEFAULT_TOKENS), events[-1]
    assert len(fake.requests) == 1


async def _ends_with(alice: Api, code: str) -> tuple[list[Any], dict[str, Any]]:
    events, _ = await alice.stream("Tell me about rivers")
    assert events[-1].name == "error" and events[-1].data["code"] == code, events[-1]
    stored = (await alice.messages(events[0].data["chatId"]))[-1]
    assert stored["status"] == "error" and stored["finishReason"] == code
    assert stored["content"] == _text(events)  # nothing already received is lost
    return events, stored


async def test_slow_first_token_is_an_upstream_timeout(make_client: MakeClient, aiohttp_server: Any) -> None:
    fake, _, alice = await _setup(make_client, aiohttp_server, "openai")
    fake.faults.first_token_delay_s = 5
    started = time.monotonic()
    await _ends_with(alice, "upstream_timeout")
    assert time.monotonic() - started < 3 and len(fake.requests) == 1


async def test_a_stall_mid_stream_ends_with_timeout_and_keeps_the_text(make_client: MakeClient, aiohttp_server: Any) -> None:
    fake, _, alice = await _setup(make_client, aiohttp_server, "anthropic")
    fake.faults.stall_after = 4
    events, stored = await _ends_with(alice, "upstream_timeout")
    assert stored["content"] == "".join(DEFAULT_TOKENS[:4])


async def test_5xx_before_the_first_token_is_retried(make_client: MakeClient, aiohttp_server: Any) -> None:
    fake, _, alice = await _setup(make_client, aiohttp_server, "openai")
    fake.faults.status, fake.faults.fail_times = 500, 2
    events, _ = await alice.stream("retry me")
    assert events[-1].name == "done" and len(fake.requests) == 3


async def test_429_retry_after_is_honoured(make_client: MakeClient, aiohttp_server: Any) -> None:
    fake, _, alice = await _setup(make_client, aiohttp_server, "openai", upstream_first_token_timeout_s=3.0,
                                  upstream_total_timeout_s=5.0)
    fake.faults.status, fake.faults.fail_times, fake.faults.retry_after = 429, 1, "1"
    started = time.monotonic()
    events, _ = await alice.stream("wait for me")
    assert events[-1].name == "done" and len(fake.requests) == 2 and time.monotonic() - started >= 1.0


async def test_persistent_5xx_ends_unavailable_after_bounded_retries(make_client: MakeClient, aiohttp_server: Any) -> None:
    fake, _, alice = await _setup(make_client, aiohttp_server, "openai", upstream_max_retries=2)
    fake.faults.status = 503
    await _ends_with(alice, "upstream_unavailable")
    assert len(fake.requests) <= 3


async def test_other_4xx_is_never_retried(make_client: MakeClient, aiohttp_server: Any) -> None:
    fake, _, alice = await _setup(make_client, aiohttp_server, "anthropic")
    fake.faults.status = 400
    await _ends_with(alice, "upstream_error")
    assert len(fake.requests) == 1


async def test_a_dropped_connection_after_tokens_is_not_retried(make_client: MakeClient, aiohttp_server: Any) -> None:
    fake, _, alice = await _setup(make_client, aiohttp_server, "openai")
    fake.faults.drop_after = 3
    _, stored = await _ends_with(alice, "upstream_unavailable")
    assert stored["content"] == "".join(DEFAULT_TOKENS[:3]) and len(fake.requests) == 1


async def test_a_malformed_frame_ends_the_reply_and_keeps_the_text(make_client: MakeClient, aiohttp_server: Any) -> None:
    fake, _, alice = await _setup(make_client, aiohttp_server, "openai")
    fake.faults.malformed_after = 5
    _, stored = await _ends_with(alice, "upstream_error")
    assert stored["content"] == "".join(DEFAULT_TOKENS[:5])


async def test_an_anthropic_error_event_mid_stream(make_client: MakeClient, aiohttp_server: Any) -> None:
    fake, _, alice = await _setup(make_client, aiohttp_server, "anthropic")
    fake.faults.stream_error = "overloaded_error"
    _, stored = await _ends_with(alice, "upstream_unavailable")
    assert stored["content"] == "".join(DEFAULT_TOKENS)


async def test_the_breaker_opens_fails_fast_and_recovers(make_client: MakeClient, aiohttp_server: Any) -> None:
    fake, client, alice = await _setup(make_client, aiohttp_server, "openai", breaker_failures=3, upstream_max_retries=0)
    fake.faults.status = 500
    for _ in range(3):
        await _ends_with(alice, "upstream_unavailable")
    calls = len(fake.requests)
    events, _ = await _ends_with(alice, "upstream_unavailable")
    assert len(fake.requests) == calls  # open: not even tried
    assert 0 < events[-1].data["retryAfter"] <= 0.5
    ready = await (await client.get("/ready")).json()
    assert ready["checks"]["upstreams"] == {"openai": "open"}
    assert 'gima_upstream_breaker_open{model="openai"} 1.0' in await (await client.get("/metrics")).text()
    await asyncio.sleep(0.6)  # cool-down over: half-open, one trial goes through
    fake.faults.status = None
    events, _ = await alice.stream("better now")
    assert events[-1].name == "done"
    assert (await (await client.get("/ready")).json())["checks"]["upstreams"] == {"openai": "closed"}


async def test_cancel_closes_the_upstream_connection(make_client: MakeClient, aiohttp_server: Any) -> None:
    fake, client, alice = await _setup(make_client, aiohttp_server, "openai")
    fake.faults.token_delay_s = 0.2
    resp = await client.post("/api/chat/stream", json={"content": "long one"}, headers=alice.headers)
    seen = await read_until(resp, lambda ev: any(e.name == "delta" for e in ev))
    await client.post(f"/api/chat/streams/{seen[0].data['messageId']}/cancel", headers=alice.headers)
    rest, _ = parse_sse(await resp.read())
    assert rest[-1].data["code"] == "cancelled"
    for _ in range(100):
        if fake.disconnects:
            break
        await asyncio.sleep(0.02)
    assert fake.disconnects == 1  # the upstream saw us hang up: no more tokens paid for


async def test_a_two_agent_pipeline(make_client: MakeClient, aiohttp_server: Any, tmp_path: Path) -> None:
    fake = FakeUpstream("openai")
    server = await aiohttp_server(fake.app)
    pipeline = tmp_path / "pipeline.toml"
    pipeline.write_text(
        '[[agents]]\nname = "planner"\nupstream = "openai"\nsystem = "Plan."\n\n'
        '[[agents]]\nname = "writer"\nupstream = "openai"\nmodel = "big-model"\nsystem = "Write."\n'
    )
    client = await make_client(agent="pipeline", pipeline_file=str(pipeline), openai_base_url=f"http://127.0.0.1:{server.port}")
    alice = await sign_up(client, "alice@example.com")
    events, _ = await alice.stream("Explain tides")
    shape = [(e.name, e.data.get("agent"), e.data.get("phase")) for e in events if e.name in ("agent", "delta")]
    expected: list[tuple[str, str | None, str | None]] = []
    for agent in ("planner", "writer"):
        expected += [("agent", agent, "start"), *[("delta", agent, None)] * len(DEFAULT_TOKENS), ("agent", agent, "end")]
    assert shape == expected and events[-1].name == "done"
    assert events[-1].data["content"] == "".join(DEFAULT_TOKENS) * 2
    writer_request = fake.requests[1]
    assert writer_request["model"] == "big-model"
    assert "[planner] " + "".join(DEFAULT_TOKENS) in writer_request["messages"][0]["content"]  # it saw the plan


def test_bad_pipeline_files_name_the_setting(tmp_path: Path) -> None:
    from gima_server.agents.pipeline import load_pipeline
    from gima_server.config import ConfigError

    for text in ("{}", '{"agents": []}', '{"agents": [{"name": "bad name"}]}', '{"agents": [{"name": "a", "upstream": "x"}]}',
                 '{"agents": [{"name": "a"}, {"name": "a"}]}', "not json"):
        path = tmp_path / "p.json"
        path.write_text(text)
        with pytest.raises(ConfigError, match="GIMA_PIPELINE_FILE"):
            load_pipeline(path)
    path = tmp_path / "ok.json"
    path.write_text(json.dumps({"agents": [{"name": "solo", "upstream": "demo"}]}))
    assert load_pipeline(path)[0].name == "solo"


async def test_the_upstreams_token_count_settles_the_budget(make_client: MakeClient, aiohttp_server: Any) -> None:
    # Budget 40, 25 reserved per reply. The fake reports 11 input + 9 output = 20 tokens for 9 deltas: counting the
    # upstream's usage leaves 20 (too few for the next reply); counting deltas would have left 31.
    fake, client, alice = await _setup(make_client, aiohttp_server, "openai", rate_limits="tokens=40/min/40",
                                       reply_token_estimate=25)
    events, _ = await alice.stream("first")
    assert events[-1].name == "done"
    await asyncio.sleep(0.05)  # settled right after the last event
    refused = await client.post("/api/chat/stream", json={"content": "second"}, headers=alice.headers)
    assert refused.status == 429 and "(tokens)" in (await refused.json())["error"]["message"]
