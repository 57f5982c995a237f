"""The whole reply flow through a real server and client: events, storage, history, resume."""

from __future__ import annotations

from ..conftest import Api


async def test_reply_streams_ordered_events_and_is_stored(alice: Api) -> None:
    events, resp = await alice.stream("How do tides work near estuaries?")
    assert resp.headers["Content-Type"].startswith("text/event-stream")
    assert resp.headers["Cache-Control"] == "no-cache"
    assert resp.headers["X-Accel-Buffering"] == "no"
    assert resp.headers["X-Trace-Id"]
    assert [e.id for e in events] == list(range(1, len(events) + 1))
    assert events[0].name == "meta" and events[-1].name == "done"
    meta, done = events[0].data, events[-1].data
    assert meta["traceId"] == resp.headers["X-Trace-Id"]
    agents = [(e.data["agent"], e.data["phase"]) for e in events if e.name == "agent"]
    assert agents == [(a, p) for a in ("planner", "researcher", "writer") for p in ("start", "end")]
    text = "".join(e.data["text"] for e in events if e.name == "delta")
    assert done["content"] == text and "tides" in text and done["messageId"] == meta["messageId"]
    messages = await alice.messages(meta["chatId"])
    assert [(m["role"], m.get("status")) for m in messages] == [("user", None), ("assistant", "complete")]
    assert messages[0]["content"] == "How do tides work near estuaries?"
    assert messages[1]["content"] == text and messages[1]["id"] == meta["messageId"]
    streamed: list[dict[str, str]] = []  # the agents' sections as the client saw them stream
    for e in events:
        if e.name == "delta":
            if not streamed or streamed[-1]["agent"] != e.data["agent"]:
                streamed.append({"agent": e.data["agent"], "text": ""})
            streamed[-1]["text"] += e.data["text"]
    assert messages[1]["agents"] == streamed and [a["agent"] for a in streamed] == ["planner", "researcher", "writer"]


async def test_retry_is_on_the_first_frame(alice: Api) -> None:
    resp = await alice.client.post("/api/chat/stream", json={"content": "hello there"}, headers=alice.headers)
    raw = await resp.read()
    assert raw.startswith(b"retry: 3000\n\nid: 1\nevent: meta\n")


async def test_second_message_goes_to_the_same_chat_and_agent_sees_it(alice: Api) -> None:
    first, _ = await alice.stream("Tell me about volcanoes")
    chat_id = first[0].data["chatId"]
    second, _ = await alice.stream("And glaciers?", chatId=chat_id)
    assert second[0].data["chatId"] == chat_id
    assert [m["role"] for m in await alice.messages(chat_id)] == ["user", "assistant", "user", "assistant"]


async def test_resume_from_every_position_after_done(alice: Api) -> None:
    events, _ = await alice.stream("Resume me from anywhere please")
    message_id, last = events[0].data["messageId"], events[-1].id
    assert last is not None
    for position in range(0, last):
        status, resumed = await alice.resume(message_id, position)
        assert status == 200
        assert [e.id for e in resumed] == list(range(position + 1, last + 1))
        assert [e.data for e in resumed] == [e.data for e in events[position:]]
    status, resumed = await alice.resume(message_id, last)
    assert status == 204 and resumed == []


async def test_resume_accepts_the_query_parameter(alice: Api) -> None:
    events, _ = await alice.stream("query parameter resume")
    message_id = events[0].data["messageId"]
    resp = await alice.client.get(f"/api/chat/streams/{message_id}/events?lastEventId=3", headers=alice.headers)
    assert resp.status == 200
    from ..sse import parse_sse

    resumed, _ = parse_sse(await resp.read())
    assert resumed[0].id == 4 and resumed[-1].name == "done"


async def test_finished_reply_is_rebuilt_from_the_store_once_its_log_is_gone(alice: Api) -> None:
    events, _ = await alice.stream("Rebuild this reply from storage")
    message_id, last = events[0].data["messageId"], events[-1].id
    registry = alice.client.app[__import__("gima_server.appkeys", fromlist=["REGISTRY"]).REGISTRY]
    registry._limits = type(registry._limits)(0.3, 0.0, 100, registry._limits.reply)  # retention 0: drop at once
    registry.sweep()
    assert registry.find(alice.user["id"], message_id) is None
    status, rebuilt = await alice.resume(message_id, 0)
    assert status == 200
    assert [e.name for e in rebuilt] == ["meta", "delta", "done"]
    assert rebuilt[-1].id == last and rebuilt[-1].data["content"] == events[-1].data["content"]
    status, tail = await alice.resume(message_id, 10)  # events 11.. are gone: the loss is said, not skipped
    assert [e.name for e in tail] == ["snapshot", "done"] and [e.id for e in tail] == [last - 1, last]
    assert tail[0].data == {"messageId": message_id, "status": "complete", "content": events[-1].data["content"],
                            "agents": [{"agent": "assistant", "text": events[-1].data["content"]}], "historyLost": True}
    status, only_end = await alice.resume(message_id, last - 1)
    assert [e.name for e in only_end] == ["done"] and only_end[0].id == last
    assert (await alice.resume(message_id, last))[0] == 204
