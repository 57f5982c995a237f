"""Metrics, the admin summary, and logs that never carry secrets."""

from __future__ import annotations

import io
import json
import logging
from typing import Any

from gima_server import appkeys
from gima_server.observability.logs import JsonFormatter

from ..conftest import MakeClient, sign_up


async def test_prometheus_metrics_after_a_reply(make_client: MakeClient) -> None:
    client = await make_client()
    alice = await sign_up(client, "alice@example.com")
    events, _ = await alice.stream("measure me")
    assert (await alice.resume(events[0].data["messageId"], 2))[0] == 200
    client.session.cookie_jar.clear()
    assert (await client.get("/api/chats")).status == 401
    text = await (await client.get("/metrics")).text()
    assert 'gima_http_request_duration_seconds_count{method="POST",route="/api/chat/stream",status="200"} 1.0' in text
    assert 'gima_http_refusals_total{reason="unauthorized",route="/api/chats",status="401"} 1.0' in text
    assert "gima_sse_time_to_first_event_seconds_count 2.0" in text
    sent = len(events) + len(events) - 2
    assert f"gima_sse_events_sent_total {float(sent)}" in text
    assert "gima_sse_resumes_total 1.0" in text and "gima_replies_started_total 1.0" in text
    assert 'gima_store_operations_total{op="begin_exchange"} 1.0' in text
    assert 'gima_store_operations_total{op="finish_reply"} 1.0' in text
    assert "gima_sse_subscribers 0.0" in text and "gima_event_loop_lag_seconds" in text


async def test_summary_is_for_admins_and_has_percentiles(make_client: MakeClient) -> None:
    client = await make_client(session_cache_s=0)  # the role is granted behind the server's back, below
    alice = await sign_up(client, "alice@example.com")
    assert (await client.get("/api/metrics/summary", headers=alice.headers)).status == 403
    await client.app[appkeys.STORE].set_roles(alice.user["id"], ["user", "admin"])
    events, _ = await alice.stream("summarise me")
    await alice.resume(events[0].data["messageId"], 3)
    client.session.cookie_jar.clear()
    assert (await client.get("/api/chats")).status == 401
    resp = await client.get("/api/metrics/summary", headers=alice.headers)
    assert resp.status == 200
    body = await resp.json()
    stream = body["endpoints"]["POST /api/chat/stream"]
    assert stream["count"] == 1 and stream["p50"] is not None and stream["p50"] <= stream["p99"]
    assert body["unauthorized"] == 1 and body["rateLimited"] == 0
    assert body["timeToFirstEventMs"]["p50"] > 0 and body["reconnectRatio"] == 1.0
    assert body["eventsPerS"] > 0 and body["activeReplies"] == 0 and body["queueDepth"] == 0


async def test_logs_never_carry_passwords_tokens_or_cookies(make_client: MakeClient) -> None:
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        client = await make_client()
        password = "hunter2-very-secret-pw"
        alice = await sign_up(client, "alice@example.com", password)
        cookie = client.session.cookie_jar.filter_cookies(client.make_url("/"))["gima_session"].value
        await alice.stream("log this reply")
        await client.post("/api/auth/login", json={"email": "alice@example.com", "password": "wrong-" + password})
        await client.get("/api/auth/me", headers={"Authorization": f"Bearer {alice.token}x"})
        await client.post("/api/chat/stream", data=b"{broken", headers={**alice.headers, "Content-Type": "application/json"})
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)
    output = buffer.getvalue()
    assert output  # something was logged: the check below means something
    for secret in (password, alice.token, alice.token[-20:], cookie):
        assert secret not in output
    for line in output.splitlines():
        entry: dict[str, Any] = json.loads(line)
        assert entry["traceId"] and entry["msg"] is not None
