from gima_server.observability.tracing import trace_id_from_headers


def test_traceparent_wins_then_request_id_then_new() -> None:
    tp = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    assert trace_id_from_headers(tp, "req") == "0af7651916cd43dd8448eb211c80319c"
    assert trace_id_from_headers("garbage", "req-1") == "req-1"
    assert trace_id_from_headers("00-" + "0" * 32 + "-b7ad6b7169203331-01", None) != "0" * 32
    made = trace_id_from_headers(None, "has spaces")
    assert len(made) == 32 and made != trace_id_from_headers(None, None)
