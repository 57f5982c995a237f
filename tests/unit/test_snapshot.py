"""The snapshot event and the replies rebuilt from the store: what a client gets for each Last-Event-ID."""

from __future__ import annotations

import json

from gima_server.store.base import Message
from gima_server.streams.reply import StoredReply
from gima_server.streams.snapshot import agents_of, decode_sections, encode_sections, snapshot_event

INTERRUPTED_ID = 20_001


def _data(frame: bytes) -> dict[str, object]:
    return json.loads(frame.split(b"data: ", 1)[1])  # type: ignore[no-any-return]


def test_agents_are_cut_at_their_sections() -> None:
    text = "plan. notes. answer"
    sections = [("planner", 0), ("researcher", 6), ("writer", 13)]
    assert agents_of(text, sections) == [
        {"agent": "planner", "text": "plan. "}, {"agent": "researcher", "text": "notes. "},
        {"agent": "writer", "text": "answer"},
    ]
    assert agents_of("", []) == [] and agents_of("plain", []) == [{"agent": "assistant", "text": "plain"}]
    assert decode_sections(encode_sections(sections)) == sections and decode_sections("") == []


def test_snapshot_event_wire_format() -> None:
    event = snapshot_event(41, "m1", "streaming", "héllo\nworld", [("writer", 0)])
    assert event.id == 41 and event.name == "snapshot" and not event.terminal
    assert event.frame.startswith(b"id: 41\nevent: snapshot\ndata: {") and event.frame.endswith(b"}\n\n")
    assert _data(event.frame) == {"messageId": "m1", "status": "streaming", "content": "héllo\nworld",
                                  "agents": [{"agent": "writer", "text": "héllo\nworld"}], "historyLost": True}


def _message(status: str, finish_reason: str | None, event_count: int) -> Message:
    return Message("m1", "c1", "u1", "assistant", "partial text", status, 1.0, finish_reason, event_count)


def test_a_complete_reply_rebuilt_for_each_last_event_id() -> None:
    done = _message("complete", "stop", 50)
    assert [(e.id, e.name) for e in StoredReply(done, "t", 0, INTERRUPTED_ID).events] == [
        (1, "meta"), (2, "delta"), (50, "done")]
    middle = StoredReply(done, "t", 10, INTERRUPTED_ID).events
    assert [(e.id, e.name) for e in middle] == [(49, "snapshot"), (50, "done")]
    assert _data(middle[0].frame)["content"] == "partial text" and _data(middle[0].frame)["status"] == "complete"
    assert [(e.id, e.name) for e in StoredReply(done, "t", 49, INTERRUPTED_ID).events] == [(50, "done")]
    assert StoredReply(done, "t", 50, INTERRUPTED_ID).events == []


def test_a_reply_left_streaming_reads_as_interrupted_past_any_id_it_used() -> None:
    orphan = _message("streaming", None, 0)
    for last_id in (0, 7, 19_999):
        events = StoredReply(orphan, "t", last_id, INTERRUPTED_ID).events
        assert events[-1].id == INTERRUPTED_ID and _data(events[-1].frame)["code"] == "interrupted"
    repaired = _message("error", "interrupted", INTERRUPTED_ID)
    assert [e.name for e in StoredReply(repaired, "t", 33, INTERRUPTED_ID).events] == ["snapshot", "error"]
    assert StoredReply(repaired, "t", INTERRUPTED_ID, INTERRUPTED_ID).events == []
