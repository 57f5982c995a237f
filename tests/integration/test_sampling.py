"""Sampling options and output limits reach the model: per-model defaults from the agents file, a request's own
values winning, OpenAI's names to OpenAI-compatible upstreams, Anthropic's to Anthropic, ranges checked."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import openai
import pytest
from aiohttp.test_utils import TestClient

from ..conftest import Api, MakeClient, sign_up
from ..upstream_fakes import FakeUpstream
from .test_models import check_config

SENT = {"temperature": 0, "top_p": 0.5, "max_tokens": 50, "stop": ["\n\n"], "seed": 7, "presence_penalty": 0.1,
        "frequency_penalty": -0.2}


async def _server(tmp_path: Path, make_client: MakeClient, aiohttp_server: Any,
                  ) -> tuple[FakeUpstream, FakeUpstream, TestClient, Api]:
    gpt, claude = FakeUpstream("openai"), FakeUpstream("anthropic")
    gpt_server, claude_server = await aiohttp_server(gpt.app), await aiohttp_server(claude.app)
    agents = tmp_path / "agents.toml"
    agents.write_text(f"""
[agents.gpt]
kind = "openai"
base_url = "http://127.0.0.1:{gpt_server.port}/v1"
model = "gpt-test"
temperature = 0.3
max_tokens = 100
default = true
[agents.claude]
kind = "anthropic"
base_url = "http://127.0.0.1:{claude_server.port}"
model = "claude-test"
top_p = 0.9
[agents.tiny]
kind = "demo"
max_tokens = 4
[agents.team]
kind = "pipeline"
steps = [{{name = "draft", agent = "gpt"}}, {{name = "polish", agent = "gpt", temperature = 1.5}}]
""")
    client = await make_client(agents_file=str(agents))
    return gpt, claude, client, await sign_up(client, "alice@example.com")


def _sdk(client: TestClient, alice: Api) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(api_key=alice.token, base_url=f"http://{client.host}:{client.port}/v1", max_retries=0)


async def test_the_openai_upstream_receives_exactly_the_options_sent_and_the_defaults_where_none_were(
    tmp_path: Path, make_client: MakeClient, aiohttp_server: Any,
) -> None:
    gpt, claude, client, alice = await _server(tmp_path, make_client, aiohttp_server)
    sdk = _sdk(client, alice)
    await sdk.chat.completions.create(model="gpt", messages=[{"role": "user", "content": "hi"}], **SENT)
    received = gpt.requests[-1]
    assert {k: received[k] for k in SENT} == SENT
    await sdk.chat.completions.create(model="gpt", messages=[{"role": "user", "content": "hi"}], temperature=1.0,
                                      max_completion_tokens=20)
    received = gpt.requests[-1]
    assert received["temperature"] == 1.0 and received["max_completion_tokens"] == 20  # the call's own win
    assert "max_tokens" not in received  # the same limit under its other name replaces the default
    await sdk.chat.completions.create(model="gpt", messages=[{"role": "user", "content": "hi"}])
    assert {k: gpt.requests[-1].get(k) for k in ("temperature", "max_tokens", "seed")} == {
        "temperature": 0.3, "max_tokens": 100, "seed": None}  # the model's defaults, nothing invented
    await sdk.close()


async def test_anthropic_receives_the_mapped_names(tmp_path: Path, make_client: MakeClient, aiohttp_server: Any) -> None:
    gpt, claude, client, alice = await _server(tmp_path, make_client, aiohttp_server)
    sdk = _sdk(client, alice)
    await sdk.chat.completions.create(model="claude", messages=[{"role": "user", "content": "hi"}], **SENT)
    received = claude.requests[-1]
    assert (received["max_tokens"], received["temperature"], received["top_p"], received["stop_sequences"]) == (
        50, 0, 0.5, ["\n\n"])
    assert not {"seed", "presence_penalty", "frequency_penalty", "stop"} & set(received)  # Anthropic has none
    await sdk.chat.completions.create(model="claude", messages=[{"role": "user", "content": "hi"}])
    assert claude.requests[-1]["top_p"] == 0.9 and claude.requests[-1]["max_tokens"] == 2048  # default, own limit
    await sdk.close()


async def test_the_native_route_and_the_ai_sdk_take_an_options_object(
    tmp_path: Path, make_client: MakeClient, aiohttp_server: Any,
) -> None:
    gpt, claude, client, alice = await _server(tmp_path, make_client, aiohttp_server)
    events, _ = await alice.stream("hi", options={"temperature": 0.1, "stop": "END"})
    assert events[-1].name == "done" and gpt.requests[-1]["temperature"] == 0.1 and gpt.requests[-1]["stop"] == "END"
    resp = await client.post("/api/chat", headers=alice.headers, json={
        "id": "ui", "options": {"seed": 3},
        "messages": [{"id": "m1", "role": "user", "parts": [{"type": "text", "text": "hi"}]}]})
    await resp.read()
    assert gpt.requests[-1]["seed"] == 3


async def test_a_pipeline_passes_them_to_each_step_and_a_steps_own_value_wins(
    tmp_path: Path, make_client: MakeClient, aiohttp_server: Any,
) -> None:
    gpt, claude, client, alice = await _server(tmp_path, make_client, aiohttp_server)
    events, _ = await alice.stream("hi", model="team", options={"temperature": 0.2, "seed": 9})
    assert events[-1].name == "done"
    draft, polish = gpt.requests[-2:]
    assert (draft["temperature"], draft["seed"]) == (0.2, 9)
    assert (polish["temperature"], polish["seed"]) == (1.5, 9)


async def test_a_reply_cut_by_its_limit_ends_with_length_everywhere(
    tmp_path: Path, make_client: MakeClient, aiohttp_server: Any,
) -> None:
    gpt, claude, client, alice = await _server(tmp_path, make_client, aiohttp_server)
    gpt.faults.cut_by_limit = claude.faults.cut_by_limit = True
    sdk = _sdk(client, alice)
    for model in ("gpt", "claude"):
        answer = await sdk.chat.completions.create(model=model, messages=[{"role": "user", "content": "hi"}],
                                                   max_tokens=5)
        assert answer.choices[0].finish_reason == "length"
    chunks = [c async for c in await sdk.chat.completions.create(
        model="gpt", messages=[{"role": "user", "content": "hi"}], max_tokens=5, stream=True)]
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "length"
    events, _ = await alice.stream("hi")
    assert events[-1].data["finishReason"] == "length"
    stored = (await alice.messages(events[0].data["chatId"]))[-1]
    assert stored["finishReason"] == "length" and stored["status"] == "complete"
    resp = await client.post("/api/chat", headers=alice.headers, json={
        "id": "ui", "messages": [{"id": "m1", "role": "user", "parts": [{"type": "text", "text": "hi"}]}]})
    parts = [json.loads(line[6:]) for line in (await resp.text()).splitlines() if line.startswith("data: {")]
    assert parts[-1] == {"type": "finish", "finishReason": "length"}
    await sdk.close()


async def test_the_demo_honours_max_tokens(tmp_path: Path, make_client: MakeClient, aiohttp_server: Any) -> None:
    gpt, claude, client, alice = await _server(tmp_path, make_client, aiohttp_server)
    events, _ = await alice.stream("Tell me about tides", model="tiny")  # its default: 4
    assert sum(e.name == "delta" for e in events) == 4 and events[-1].data["finishReason"] == "length"
    events, _ = await alice.stream("Tell me about tides", model="tiny", options={"max_tokens": 7})
    assert sum(e.name == "delta" for e in events) == 7 and events[-1].data["finishReason"] == "length"
    events, _ = await alice.stream("Tell me about tides", model="tiny", options={"max_tokens": 100000})
    assert events[-1].data["finishReason"] == "stop"  # a limit it never reached


@pytest.mark.parametrize(("field", "value"), [
    ("temperature", 2.5), ("temperature", -0.1), ("top_p", 1.5), ("max_tokens", 0), ("max_completion_tokens", -3),
    ("stop", ["a", "b", "c", "d", "e"]), ("stop", ""), ("seed", 1.5), ("presence_penalty", 3),
    ("frequency_penalty", -2.5), ("temperature", True),
])
async def test_each_out_of_range_value_is_a_400_naming_it_that_starts_nothing(
    tmp_path: Path, make_client: MakeClient, aiohttp_server: Any, field: str, value: Any,
) -> None:
    gpt, claude, client, alice = await _server(tmp_path, make_client, aiohttp_server)
    v1 = await client.post("/v1/chat/completions", headers=alice.headers, json={
        "model": "gpt", "messages": [{"role": "user", "content": "hi"}], field: value})
    body = await v1.json()
    assert v1.status == 400 and field in body["error"]["message"], body
    native = await client.post("/api/chat/stream", headers=alice.headers,
                               json={"content": "hi", "options": {field: value}})
    assert native.status == 400 and f"options.{field}" in (await native.json())["error"]["message"]
    assert gpt.requests == [] and (await (await client.get("/api/chats", headers=alice.headers)).json())["chats"] == []


async def test_both_names_of_the_limit_at_once_and_unknown_options_are_refused(
    tmp_path: Path, make_client: MakeClient, aiohttp_server: Any,
) -> None:
    gpt, claude, client, alice = await _server(tmp_path, make_client, aiohttp_server)
    both = await client.post("/v1/chat/completions", headers=alice.headers, json={
        "model": "gpt", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5, "max_completion_tokens": 5})
    assert both.status == 400
    unknown = await client.post("/api/chat/stream", headers=alice.headers,
                                json={"content": "hi", "options": {"temprature": 1}})
    assert unknown.status == 400 and "temprature" in (await unknown.json())["error"]["message"]
    tools = await client.post("/v1/chat/completions", headers=alice.headers, json={
        "model": "gpt", "messages": [{"role": "user", "content": "hi"}], "n": 2})
    assert tools.status == 400 and gpt.requests == []  # what cannot be honoured stays refused


def test_an_out_of_range_default_in_the_agents_file_is_a_problem_line(tmp_path: Path) -> None:
    agents = tmp_path / "agents.toml"
    agents.write_text('[agents.a]\nkind = "demo"\ntemperature = 7\n')
    done = check_config(tmp_path, str(agents))
    assert done.returncode == 2 and "agents.a: temperature must be a number from 0 to 2" in done.stderr
