from gima_server.observability.tracing import trace_id_from_headers


def test_traceparent_wins_then_request_id_then_new() -> None:
    tp = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    assert trace_id_from_headers(tp, "req") == "0af7651916cd43dd8448eb211c80319c"
    assert trace_id_from_headers("garbage", "req-1") == "req-1"
    assert trace_id_from_headers("00-" + "0" * 32 + "-b7ad6b7169203331-01", None) != "0" * 32
    made = trace_id_from_headers(None, "has spaces")
    assert len(made) == 32 and made != trace_id_from_headers(None, None)


def test_outgoing_traceparent_continues_the_trace() -> None:
    from gima_server.observability.tracing import outgoing_traceparent

    header = outgoing_traceparent("4bf92f3577b34da6a3ce929d0e0e4736")
    assert trace_id_from_headers(header, None) == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert outgoing_traceparent("4bf92f3577b34da6a3ce929d0e0e4736") != header  # a new span each call
    derived = outgoing_traceparent("req-123")
    assert trace_id_from_headers(derived, None) == trace_id_from_headers(outgoing_traceparent("req-123"), None)
