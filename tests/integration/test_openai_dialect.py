"""The official openai Python SDK against a live server's /v1: models, streamed and plain completions, usage,
typed errors, and a caller that hangs up cancelling its reply."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiohttp
import openai
import pytest
from aiohttp.test_utils import TestClient

from gima_server import appkeys

from ..cluster import start_cluster
from ..conftest import Api, MakeClient, quick_user
from ..secrets_watch import remember
from ..upstream_fakes import DEFAULT_TOKENS, FakeUpstream

MODEL = "gima-demo"


async def _program(client: TestClient, email: str = "alice@example.com") -> tuple[Api, str]:
    person = await quick_user(client, email)
    resp = await client.post("/api/keys", json={"name": "sdk"}, headers=person.headers)
    key = str((await resp.json())["key"])
    remember(key)
    return person, key


def _sdk(client: TestClient, key: str) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=str(client.make_url("/v1")), api_key=key, max_retries=0)


async def _stored_turns(client: TestClient, person: Api) -> list[list[dict[str, Any]]]:
    chats = (await (await client.get("/api/chats", headers=person.headers)).json())["chats"]
    return [await person.messages(chat["id"]) for chat in chats]


async def test_models_list_the_configured_agent(make_client: MakeClient) -> None:
    client = await make_client()
    _, key = await _program(client)
    async with _sdk(client, key) as sdk:
        models = await sdk.models.list()
    assert [m.id for m in models.data] == [MODEL]


async def test_a_streamed_completion_with_usage_is_a_stored_turn(make_client: MakeClient) -> None:
    client = await make_client(demo_reply_words=30)
    person, key = await _program(client)
    async with _sdk(client, key) as sdk:
        stream = await sdk.chat.completions.create(
            model=MODEL, stream=True, stream_options={"include_usage": True}, temperature=0.2, user="u-1",
            messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
                      {"role": "assistant", "content": "Hello!"}, {"role": "user", "content": "Explain tides"}],
        )
        chunks = [chunk async for chunk in stream]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert chunks[0].choices[0].delta.role == "assistant" and chunks[0].object == "chat.completion.chunk"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens > 0 and chunks[-1].usage.prompt_tokens > 0
    assert len({c.id for c in chunks}) == 1 and chunks[0].id.startswith("chatcmpl-")
    [turn] = await _stored_turns(client, person)
    assert [(m["role"], m["content"]) for m in turn] == [("user", "Explain tides"), ("assistant", text)]
    assert turn[1]["status"] == "complete"


async def test_a_plain_completion(make_client: MakeClient) -> None:
    client = await make_client(demo_reply_words=20)
    person, key = await _program(client)
    async with _sdk(client, key) as sdk:
        completion = await sdk.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Hello?"}])
    assert completion.object == "chat.completion" and completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None and completion.usage.total_tokens > 0
    [turn] = await _stored_turns(client, person)
    assert turn[1]["content"] == completion.choices[0].message.content and turn[1]["status"] == "complete"


async def test_the_conversation_reaches_the_upstream_as_sent(make_client: MakeClient, aiohttp_server: Any) -> None:
    fake = FakeUpstream("openai")
    server = await aiohttp_server(fake.app)
    client = await make_client(agent="openai", openai_base_url=f"http://127.0.0.1:{server.port}/v1",
                               openai_api_key="upstream-key")
    _, key = await _program(client)
    async with _sdk(client, key) as sdk:
        completion = await sdk.chat.completions.create(model="gima-openai", messages=[
            {"role": "developer", "content": "Answer in French."},
            {"role": "user", "content": [{"type": "text", "text": "Bonjour"}]},
            {"role": "assistant", "content": "Salut"}, {"role": "user", "content": "Et la marée ?"}])
    assert completion.choices[0].message.content == "".join(DEFAULT_TOKENS)
    sent = fake.requests[0]["messages"]
    assert sent[0]["role"] == "system" and "Answer in French." in sent[0]["content"]
    assert sent[1:] == [{"role": "user", "content": "Bonjour"}, {"role": "assistant", "content": "Salut"},
                        {"role": "user", "content": "Et la marée ?"}]


async def test_a_wrong_key_is_an_authentication_error(make_client: MakeClient) -> None:
    client = await make_client()
    async with _sdk(client, "gima_sk_" + "n" * 43) as sdk:
        with pytest.raises(openai.AuthenticationError) as raised:
            await sdk.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}])
    assert raised.value.status_code == 401 and raised.value.code == "invalid_api_key"


async def test_a_rate_limit_is_a_rate_limit_error_with_retry_after(make_client: MakeClient) -> None:
    client = await make_client(rate_limits="api_key=1/min/1")
    _, key = await _program(client)
    async with _sdk(client, key) as sdk:
        await sdk.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "one"}])
        with pytest.raises(openai.RateLimitError) as raised:
            await sdk.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "two"}])
    assert int(raised.value.response.headers["retry-after"]) >= 1


@pytest.mark.parametrize("stream", [True, False])
async def test_a_caller_that_hangs_up_cancels_the_reply(make_client: MakeClient, stream: bool) -> None:
    client = await make_client(demo_tokens_per_s=30, demo_reply_words=300)
    person, key = await _program(client)
    if stream:
        async with _sdk(client, key) as sdk:
            chunks = await sdk.chat.completions.create(model=MODEL, stream=True,
                                                       messages=[{"role": "user", "content": "a long story"}])
            async for chunk in chunks:
                if chunk.choices and chunk.choices[0].delta.content:
                    break
            await chunks.close()  # the program stops reading and hangs up
    else:
        with pytest.raises(TimeoutError):
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=0.5)) as session:
                await session.post(client.make_url("/v1/chat/completions"), headers={"Authorization": f"Bearer {key}"},
                                   json={"model": MODEL, "messages": [{"role": "user", "content": "a long story"}]})
    registry = client.app[appkeys.REGISTRY]
    for _ in range(100):
        turns = await _stored_turns(client, person)
        if turns and turns[0][1]["status"] != "streaming" and not registry.user_streaming(person.user["id"]):
            break
        await asyncio.sleep(0.05)
    reply = turns[0][1]
    assert reply["status"] == "cancelled" and reply["finishReason"] == "cancelled" and reply["upstreamClosed"] is True
    assert not registry.user_streaming(person.user["id"])  # the reply's task has ended, not only its record


@pytest.mark.parametrize(("extra", "error"), [
    ({"n": 2}, openai.BadRequestError),
    ({"tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}]}, openai.BadRequestError),
    ({"logprobs": True}, openai.BadRequestError),
    ({"response_format": {"type": "json_object"}}, openai.BadRequestError),
    ({"extra_body": {"frobnicate": 1}}, openai.BadRequestError),
    ({"model": "gpt-4o"}, openai.BadRequestError),
    ({"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]}, openai.BadRequestError),
    ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]},
     openai.BadRequestError),
    ({"messages": []}, openai.BadRequestError),
    ({"messages": [{"role": "tool", "content": "x", "tool_call_id": "t"}]}, openai.BadRequestError),
])
async def test_what_cannot_be_honoured_is_refused_and_changes_nothing(
    make_client: MakeClient, extra: dict[str, Any], error: type[Exception]
) -> None:
    client = await make_client()
    person, key = await _program(client)
    call: dict[str, Any] = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], **extra}
    async with _sdk(client, key) as sdk:
        with pytest.raises(error) as raised:
            await sdk.chat.completions.create(**call)
    assert isinstance(raised.value, openai.APIStatusError) and raised.value.status_code < 500
    assert await _stored_turns(client, person) == []


async def test_an_idempotency_key_replays_the_same_completion(make_client: MakeClient) -> None:
    client = await make_client(demo_reply_words=20)
    person, key = await _program(client)
    async with _sdk(client, key) as sdk:
        calls = [await sdk.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "once"}], extra_headers={"Idempotency-Key": "job-7"})
            for _ in range(2)]
    assert calls[0].id == calls[1].id and calls[0].choices[0].message.content == calls[1].choices[0].message.content
    assert len(await _stored_turns(client, person)) == 1


@pytest.mark.slow
@pytest.mark.parametrize("stream", [True, False])
async def test_a_hang_up_through_nginx_cancels_on_a_production_server(tmp_path: Path, stream: bool) -> None:
    """As deployed: gima-server as its own process (which never cancels a handler itself) behind nginx."""
    cluster = start_cluster(tmp_path, None, 1, demo_tokens_per_s="30", demo_reply_words="300")
    try:
        async with aiohttp.ClientSession() as session:
            signup = await session.post(f"{cluster.front}/api/auth/signup",
                                        json={"email": "prod@example.com", "password": "a good password"})
            token = (await signup.json())["accessToken"]
            remember(token)
            auth = {"Authorization": f"Bearer {token}"}
            key = (await (await session.post(f"{cluster.front}/api/keys", json={"name": "p"}, headers=auth)).json())["key"]
            remember(key)
            body = {"model": MODEL, "messages": [{"role": "user", "content": "a long story"}], "stream": stream}
            with pytest.raises(TimeoutError):
                async with session.post(f"{cluster.front}/v1/chat/completions", json=body,
                                        headers={"Authorization": f"Bearer {key}"},
                                        timeout=aiohttp.ClientTimeout(total=0.6)) as resp:
                    await resp.read()  # a few chunks arrive, then the caller gives up
            for _ in range(100):
                chats = (await (await session.get(f"{cluster.front}/api/chats", headers=auth)).json())["chats"]
                messages = (await (await session.get(f"{cluster.front}/api/chats/{chats[0]['id']}/messages",
                                                     headers=auth)).json())["messages"] if chats else []
                if messages and messages[-1]["status"] != "streaming":
                    break
                await asyncio.sleep(0.1)
            assert messages[-1]["status"] == "cancelled" and messages[-1]["upstreamClosed"] is True, messages
            assert len(messages[-1]["content"]) < 300 * 3  # stopped well before the whole reply
    finally:
        cluster.stop()


@pytest.mark.parametrize("body", [
    {"model": 5, "messages": [{"role": "user", "content": "hi"}]},
    {"model": MODEL, "messages": "hi"},
    {"model": MODEL, "messages": [{"role": "user", "content": 5}]},
    {"model": MODEL, "messages": [{"role": "user"}]},
    {"model": MODEL, "messages": [{"role": "user", "content": "a\u0000b"}]},
    {"model": MODEL, "messages": [{"role": "user", "content": "hi", "color": "red"}]},
    {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "stream": "yes"},
    {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "stream_options": {"include_usage": True}},
    {"model": MODEL, "messages": [{"role": "user", "content": "x" * 70_000}]},
    {"model": MODEL, "messages": [[]]},
    {"model": MODEL, "messages": [{"role": {"r": 1}, "content": "hi"}]},  # found by schemathesis: was a 500
    {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "tool_choice": {"type": "function"}},
    [],
])
async def test_malformed_calls_get_openai_errors_not_500(make_client: MakeClient, body: Any) -> None:
    client = await make_client()
    person, key = await _program(client)
    resp = await client.post("/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {key}"})
    error = (await resp.json())["error"]
    assert resp.status in (400, 413), (resp.status, error)
    assert set(error) >= {"message", "type", "param", "code"} and error["type"] == "invalid_request_error"
    assert await _stored_turns(client, person) == []
