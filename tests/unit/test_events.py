from gima_server.streams.events import encode_sse, make_event, retry_frame, unnumbered_error

from ..sse import parse_sse


def test_event_frame_bytes() -> None:
    event = make_event(7, "delta", {"agent": "writer", "text": "hé"})
    assert event.frame == 'id: 7\nevent: delta\ndata: {"agent":"writer","text":"hé"}\n\n'.encode()


def test_line_breaks_in_data_stay_inside_one_event() -> None:
    frame = encode_sse("a\r\nb\rc\nd", event_id=1, name="x")
    assert frame == b"id: 1\nevent: x\ndata: a\ndata: b\ndata: c\ndata: d\n\n"


def test_json_content_with_newlines_cannot_inject_fields() -> None:
    event = make_event(1, "delta", {"text": "\n\nid: 99\nevent: done\ndata: {}\n\n"})
    assert event.frame.count(b"\n\n") == 1
    parsed, _ = parse_sse(event.frame)
    assert len(parsed) == 1 and parsed[0].id == 1 and parsed[0].data["text"].startswith("\n\nid: 99")


def test_event_name_with_line_break_is_refused() -> None:
    import pytest

    with pytest.raises(ValueError):
        encode_sse("{}", name="bad\nname")


def test_retry_and_unnumbered_error() -> None:
    assert retry_frame(3000) == b"retry: 3000\n\n"
    frame = unnumbered_error("slow_consumer", "behind", "t1")
    assert b"id:" not in frame and frame.startswith(b"event: error\n")


def test_the_fast_frame_is_exactly_what_the_general_encoder_writes() -> None:
    from gima_server.streams.events import encode_sse, make_event, to_json

    for data in ({"agent": "writer", "text": "line one\nline two\r\n"}, {"text": "naïve — ☃ \u2028 \x00"}, {}):
        assert make_event(7, "delta", data).frame == encode_sse(to_json(data), event_id=7, name="delta")
    import pytest

    with pytest.raises(ValueError):
        make_event(1, "bad\nname", {})


def test_the_delta_fast_path_writes_the_same_bytes_as_the_general_encoder() -> None:
    from gima_server.streams.events import delta_event, make_event

    for agent, text in (("writer", "plain "), ("re\"search", "quote \" back\\slash \n\r\t \x01 naïve ☃ \u2028")):
        fast, general = delta_event(9, agent, text), make_event(9, "delta", {"agent": agent, "text": text})
        assert (fast.id, fast.name, fast.frame) == (general.id, general.name, general.frame)
