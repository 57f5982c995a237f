"""Several models behind one server (an agents file): choosing one on every route, and fallbacks before the first
token, against fake upstreams that speak the real wire formats."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import openai
import pytest
from aiohttp.test_utils import TestClient

from ..conftest import Api, MakeClient, same_origin, sign_up
from ..upstream_fakes import DEFAULT_TOKENS, FakeUpstream

FAST = {"upstream_first_token_timeout_s": 1.0, "upstream_total_timeout_s": 3.0, "upstream_max_retries": 0,
        "breaker_failures": 2, "breaker_cooldown_s": 30.0}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _upstream(aiohttp_server: Any, kind: str = "openai") -> tuple[FakeUpstream, str]:
    fake = FakeUpstream(kind)
    server = await aiohttp_server(fake.app)
    return fake, f"http://127.0.0.1:{server.port}/v1"


def check_config(tmp_path: Path, agents_file: str, **env: str) -> subprocess.CompletedProcess[str]:
    """`gima-server check-config` in a process of its own, with only this agents file (and env) configured."""
    clean = {"PATH": str(Path(sys.executable).parent), "HOME": str(tmp_path), "GIMA_AGENTS_FILE": agents_file,
             "GIMA_DATA_DIR": str(tmp_path / "data"), **env}
    return subprocess.run([sys.executable, "-m", "gima_server", "check-config"], env=clean, capture_output=True,
                          text=True, timeout=60)


def _agents_file(tmp_path: Path, text: str) -> str:
    path = tmp_path / "agents.toml"
    path.write_text(text)
    return str(path)


async def _two_models(tmp_path: Path, make_client: MakeClient, aiohttp_server: Any,
                      monkeypatch: pytest.MonkeyPatch) -> tuple[FakeUpstream, FakeUpstream, TestClient, Api]:
    """`fast` (openai, falls back to `careful`), `careful` (anthropic) and `local` (the demo)."""
    fast, fast_url = await _upstream(aiohttp_server)
    careful, careful_url = await _upstream(aiohttp_server, "anthropic")
    monkeypatch.setenv("TEST_FAST_KEY", "fast-secret-key")
    path = _agents_file(tmp_path, f"""
[agents.fast]
kind = "openai"
label = "Fast"
base_url = "{fast_url}"
model = "llama3"
api_key_env = "TEST_FAST_KEY"
default = true
fallback = ["careful"]

[agents.careful]
kind = "anthropic"
base_url = "{careful_url}"
model = "claude-test"

[agents.local]
kind = "demo"
""")
    client = await make_client(agents_file=path, **FAST)
    return fast, careful, client, await sign_up(client, "alice@example.com")


def _text(events: list[Any]) -> str:
    return "".join(e.data["text"] for e in events if e.name == "delta")


async def test_the_models_are_listed_and_each_answers_when_named(
    tmp_path: Path, make_client: MakeClient, aiohttp_server: Any, monkeypatch: pytest.MonkeyPatch,
) -> None:
    fast, careful, client, alice = await _two_models(tmp_path, make_client, aiohttp_server, monkeypatch)
    listing = await (await client.get("/api/models", headers=alice.headers)).json()
    assert listing == {"models": [{"id": "fast", "label": "Fast", "default": True},
                                  {"id": "careful", "label": "careful", "default": False},
                                  {"id": "local", "label": "local", "default": False}],
                       "voice": False}  # no audio upstream configured
    v1 = await (await client.get("/v1/models", headers=alice.headers)).json()
    assert [m["id"] for m in v1["data"]] == ["fast", "careful", "local"]

    events, _ = await alice.stream("Which model?")  # none named: the default
    assert events[0].data["model"] == "fast" and fast.requests[-1]["model"] == "llama3"
    assert fast.headers[-1]["Authorization"] == "Bearer fast-secret-key"
    events, _ = await alice.stream("And now?", model="careful", chatId=events[0].data["chatId"])
    assert events[0].data["model"] == "careful" and careful.requests[-1]["model"] == "claude-test"
    assert events[-1].name == "done" and _text(events) == "".join(DEFAULT_TOKENS)
    events, _ = await alice.stream("And the demo?", model="local", chatId=events[0].data["chatId"])
    assert events[0].data["model"] == "local" and events[-1].name == "done"
    stored = await alice.messages(events[0].data["chatId"])
    assert [m.get("model") for m in stored if m["role"] == "assistant"] == ["fast", "careful", "local"]
    assert len(fast.requests) == 1 and len(careful.requests) == 1  # each asked once, by its own name


async def test_an_unknown_model_is_a_400_naming_the_ids_on_every_route_and_stores_nothing(
    tmp_path: Path, make_client: MakeClient, aiohttp_server: Any, monkeypatch: pytest.MonkeyPatch,
) -> None:
    fast, careful, client, alice = await _two_models(tmp_path, make_client, aiohttp_server, monkeypatch)
    native = await client.post("/api/chat/stream", json={"content": "hi", "model": "gpt-9"}, headers=alice.headers)
    body = await native.json()
    assert native.status == 400 and body["error"]["code"] == "invalid_request"
    assert "fast, careful, local" in body["error"]["message"]
    ui = await client.post("/api/chat", headers=alice.headers, json={
        "id": "c1", "model": "gpt-9", "messages": [{"id": "m1", "role": "user", "parts": [{"type": "text", "text": "hi"}]}]})
    assert ui.status == 400 and "fast, careful, local" in (await ui.json())["error"]["message"]
    v1 = await client.post("/v1/chat/completions", headers=alice.headers,
                           json={"model": "gpt-9", "messages": [{"role": "user", "content": "hi"}]})
    assert v1.status == 400 and "fast, careful, local" in (await v1.json())["error"]["message"]
    async with client.ws_connect("/ws", headers={**alice.headers, **same_origin(client)}) as ws:
        await ws.send_json({"type": "send", "content": "hi", "model": "gpt-9"})
        frame = await ws.receive_json(timeout=5)
        assert frame["type"] == "error" and "fast, careful, local" in frame["data"]["message"]
    chats = await (await client.get("/api/chats", headers=alice.headers)).json()
    assert chats["chats"] == [] and fast.requests == [] and careful.requests == []


async def test_the_openai_sdk_chats_with_each_model(
    tmp_path: Path, make_client: MakeClient, aiohttp_server: Any, monkeypatch: pytest.MonkeyPatch,
) -> None:
    fast, careful, client, alice = await _two_models(tmp_path, make_client, aiohttp_server, monkeypatch)
    sdk = openai.AsyncOpenAI(api_key=alice.token, base_url=f"http://{client.host}:{client.port}/v1", max_retries=0)
    assert [m.id async for m in sdk.models.list()] == ["fast", "careful", "local"]
    for model, upstream in (("fast", fast), ("careful", careful)):
        answer = await sdk.chat.completions.create(model=model, messages=[{"role": "user", "content": "hello"}])
        assert answer.model == model and answer.choices[0].message.content == "".join(DEFAULT_TOKENS)
        assert upstream.requests[-1]["model"] in ("llama3", "claude-test")
    chunks = [c async for c in await sdk.chat.completions.create(
        model="local", messages=[{"role": "user", "content": "hello"}], stream=True)]
    assert {c.model for c in chunks} == {"local"} and "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    await sdk.close()


async def test_the_websocket_and_the_ai_sdk_body_choose_a_model_too(
    tmp_path: Path, make_client: MakeClient, aiohttp_server: Any, monkeypatch: pytest.MonkeyPatch,
) -> None:
    fast, careful, client, alice = await _two_models(tmp_path, make_client, aiohttp_server, monkeypatch)
    async with client.ws_connect("/ws", headers={**alice.headers, **same_origin(client)}) as ws:
        await ws.send_json({"type": "send", "content": "over the socket", "model": "careful"})
        frames = []
        while not frames or frames[-1]["type"] not in ("done", "error"):
            frames.append(await ws.receive_json(timeout=10))
    assert frames[0]["type"] == "meta" and frames[0]["data"]["model"] == "careful" and frames[-1]["type"] == "done"
    assert careful.requests[-1]["messages"][-1]["content"] == "over the socket"
    resp = await client.post("/api/chat", headers=alice.headers, json={
        "id": "ui-1", "model": "local",
        "messages": [{"id": "m1", "role": "user", "parts": [{"type": "text", "text": "from useChat"}]}]})
    parts = [json.loads(line[6:]) for line in (await resp.text()).splitlines()
             if line.startswith("data: {")]
    assert parts[0] == {"type": "start", "messageId": parts[0]["messageId"],
                        "messageMetadata": {"model": "local", "contextMessages": 0}}
    assert parts[-1]["type"] == "finish" and len(fast.requests) == 0  # the demo answered, not the default


# Fallbacks -----------------------------------------------------------------------------------------------------

async def _fallback_reply(alice: Api, **body: Any) -> list[Any]:
    events, _ = await alice.stream("Tell me about tides", **body)
    ids = [e.id for e in events]
    assert ids == list(range(1, len(events) + 1)), ids  # no repeated or lost id across the move
    return events


@pytest.mark.parametrize("fault", ["status_500", "connect_refused"])
async def test_a_failure_before_the_first_token_moves_to_the_fallback(
    tmp_path: Path, make_client: MakeClient, aiohttp_server: Any, monkeypatch: pytest.MonkeyPatch, fault: str,
) -> None:
    careful, careful_url = await _upstream(aiohttp_server, "anthropic")
    if fault == "status_500":
        fast, fast_url = await _upstream(aiohttp_server)
        fast.faults.status = 500
    else:
        fast, fast_url = None, f"http://127.0.0.1:{_free_port()}/v1"  # nothing listens there
    path = _agents_file(tmp_path, f"""
[agents.fast]
kind = "openai"
base_url = "{fast_url}"
model = "llama3"
fallback = ["careful"]
[agents.careful]
kind = "anthropic"
base_url = "{careful_url}"
model = "claude-test"
""")
    client = await make_client(agents_file=path, **FAST)
    alice = await sign_up(client, "alice@example.com")
    events = await _fallback_reply(alice)
    names = [e.name for e in events]
    assert names[:3] == ["meta", "model", "agent"] and names[-1] == "done" and names.count("model") == 1
    assert events[0].data["model"] == "fast"
    assert events[1].data == {"model": "careful", "fallbackFrom": "fast", "reason": "upstream_unavailable"}
    assert _text(events) == "".join(DEFAULT_TOKENS) and events[-1].data["content"] == _text(events)
    assert len(careful.requests) == 1 and (fast is None or len(fast.requests) == 1)
    stored = (await alice.messages(events[0].data["chatId"]))[-1]
    assert stored["model"] == "careful" and stored["status"] == "complete" and stored["content"] == _text(events)
    metrics = await (await client.get("/metrics")).text()
    assert 'gima_model_fallbacks_total{fallback_from="fast",model="careful",reason="upstream_unavailable"} 1.0' in metrics
    assert 'gima_replies_ended_total{end="done",model="careful"} 1.0' in metrics


async def test_an_open_breaker_moves_to_the_fallback_without_calling_the_model(
    tmp_path: Path, make_client: MakeClient, aiohttp_server: Any, monkeypatch: pytest.MonkeyPatch,
) -> None:
    fast, careful, client, alice = await _two_models(tmp_path, make_client, aiohttp_server, monkeypatch)
    fast.faults.status = 503
    for _ in range(2):  # breaker_failures = 2: two failed calls open fast's breaker
        await _fallback_reply(alice)
    calls = len(fast.requests)
    events = await _fallback_reply(alice)
    assert events[1].data == {"model": "careful", "fallbackFrom": "fast", "reason": "breaker_open"}
    assert len(fast.requests) == calls  # open: not called at all
    metrics = await (await client.get("/metrics")).text()
    assert 'gima_upstream_breaker_open{model="fast"} 1.0' in metrics
    assert 'gima_upstream_breaker_open{model="careful"} 0.0' in metrics
    ready = await (await client.get("/ready")).json()
    assert ready["checks"]["upstreams"] == {"fast": "open", "careful": "closed"}


async def test_a_failure_after_the_first_token_ends_the_reply_without_a_fallback(
    tmp_path: Path, make_client: MakeClient, aiohttp_server: Any, monkeypatch: pytest.MonkeyPatch,
) -> None:
    fast, careful, client, alice = await _two_models(tmp_path, make_client, aiohttp_server, monkeypatch)
    fast.faults.drop_after = 3  # three tokens, then the connection is cut
    events, _ = await alice.stream("Tell me about tides")
    assert [e.name for e in events].count("model") == 0 and careful.requests == []
    assert events[-1].name == "error" and events[-1].data["code"] == "upstream_unavailable"
    assert _text(events) == "".join(DEFAULT_TOKENS[:3])  # no silent restart mid-text
    stored = (await alice.messages(events[0].data["chatId"]))[-1]
    assert stored["model"] == "fast" and stored["status"] == "error" and stored["content"] == _text(events)


async def test_the_last_model_of_the_chain_failing_ends_the_reply_with_its_error(
    tmp_path: Path, make_client: MakeClient, aiohttp_server: Any, monkeypatch: pytest.MonkeyPatch,
) -> None:
    fast, careful, client, alice = await _two_models(tmp_path, make_client, aiohttp_server, monkeypatch)
    fast.faults.status = careful.faults.status = 500
    events = await _fallback_reply(alice)
    assert [e.name for e in events] == ["meta", "model", "error"]
    assert events[-1].data["code"] == "upstream_unavailable"
    stored = (await alice.messages(events[0].data["chatId"]))[-1]
    assert stored["model"] == "careful" and stored["status"] == "error"


async def test_a_resume_after_a_fallback_replays_the_same_events(
    tmp_path: Path, make_client: MakeClient, aiohttp_server: Any, monkeypatch: pytest.MonkeyPatch,
) -> None:
    fast, careful, client, alice = await _two_models(tmp_path, make_client, aiohttp_server, monkeypatch)
    fast.faults.status = 500
    events = await _fallback_reply(alice)
    status, again = await alice.resume(events[0].data["messageId"], 1)
    assert status == 200 and [(e.id, e.name, e.data) for e in again] == [(e.id, e.name, e.data) for e in events[1:]]


# The agents file, checked -------------------------------------------------------------------------------------

def test_check_config_names_every_problem_of_the_agents_file_one_line_each(tmp_path: Path) -> None:
    path = _agents_file(tmp_path, """
[agents.a]
kind = "openai"
base_url = "http://localhost:1/v1"
model = "m"
api_key_env = "GIMA_TEST_SURELY_UNSET_KEY"
fallback = ["b", "nowhere"]
[agents.b]
kind = "demo"
fallback = ["c"]
[agents.c]
kind = "demo"
fallback = ["b"]
[agents.d]
kind = "llama"
[agents.e]
kind = "pipeline"
steps = [{name = "plan", agent = "ghost"}]
""")
    done = check_config(tmp_path, path)
    assert done.returncode == 2, done.stdout + done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    problems = {
        "agents.a: api_key_env names GIMA_TEST_SURELY_UNSET_KEY, which is not set",
        "agents.a: fallback names unknown agent 'nowhere'",
        "fallbacks form a cycle: b -> c -> b",
        "agents.d: unknown kind 'llama'",
        "agents.e: step plan names unknown agent 'ghost'",
    }
    for problem in problems:
        assert sum(problem in line for line in lines) == 1, (problem, lines)
    assert len(lines) == len(problems)  # one line each, nothing else


def test_a_valid_agents_file_passes_check_config_and_never_shows_the_key(tmp_path: Path) -> None:
    path = _agents_file(tmp_path, """
[agents.a]
kind = "openai"
base_url = "http://localhost:1/v1"
model = "m"
api_key_env = "TEST_AGENT_KEY"
default = true
fallback = ["b"]
[agents.b]
kind = "demo"
""")
    done = check_config(tmp_path, path, TEST_AGENT_KEY="sk-very-secret-value")
    assert done.returncode == 0 and "configuration is valid" in done.stdout, done.stderr
    assert "sk-very-secret-value" not in done.stdout + done.stderr


def test_without_an_agents_file_today_s_variables_define_one_model(tmp_path: Path) -> None:
    from gima_server.agents import make_models
    from gima_server.config import Settings

    models = make_models(Settings(data_dir=tmp_path, agent="demo"))
    assert models.listing() == [{"id": "gima-demo", "label": "gima-demo", "default": True}]
    assert json.dumps(models.listing())  # what /api/models answers
