"""OpenTelemetry over OTLP/HTTP, decoded with `opentelemetry-proto` by a receiver in the test: the span tree of one
streamed reply on a real gima-server process (server span with the X-Trace-Id as its trace id, the gima.reply span
under it with first_token and end, a client span for the upstream call whose ids the upstream received in
traceparent, store spans), and a reply resumed on another process whose resume span links to the reply's span."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from ..processes import wait_healthy
from ..redis_server import free_port
from ..sse import parse_sse
from ..upstream_fakes import FakeUpstream


class Collector:
    """An OTLP/HTTP trace receiver: every span exported to it, by name."""

    def __init__(self) -> None:
        self.spans: list[Any] = []
        self.resources: list[dict[str, str]] = []
        self.app = web.Application()
        self.app.router.add_post("/v1/traces", self.export)

    async def export(self, request: web.Request) -> web.Response:
        message = ExportTraceServiceRequest()
        message.ParseFromString(await request.read())
        for resource_spans in message.resource_spans:
            attrs = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
            for scope in resource_spans.scope_spans:
                for span in scope.spans:
                    self.spans.append(span)
                    self.resources.append(attrs)
        return web.Response(body=b"", content_type="application/x-protobuf")

    def named(self, name: str) -> list[Any]:
        return [s for s in self.spans if s.name == name]

    async def wait_for(self, name: str, count: int = 1, timeout_s: float = 15) -> list[Any]:
        for _ in range(int(timeout_s / 0.05)):
            if len(self.named(name)) >= count:
                return self.named(name)
            await asyncio.sleep(0.05)
        raise AssertionError(f"no {name} span among {[s.name for s in self.spans]}")


def _start(tmp_path: Path, port: int, collector_port: int, **env: str) -> subprocess.Popen[bytes]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("GIMA_", "OTEL_"))}
    clean.update({"GIMA_DATA_DIR": str(tmp_path / "data"), "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{collector_port}",
                  "OTEL_BSP_SCHEDULE_DELAY": "100", "OTEL_SERVICE_NAME": "gima-test", **env})
    return subprocess.Popen([sys.executable, "-m", "gima_server", "--port", str(port)], env=clean,
                            stdout=subprocess.DEVNULL)


def _stop(*procs: subprocess.Popen[bytes]) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc in procs:
        proc.wait(timeout=30)


def _hex(raw: bytes) -> str:
    return raw.hex()


async def test_one_streamed_reply_makes_the_span_tree_and_the_upstream_gets_its_traceparent(
    tmp_path: Path, aiohttp_server: Any,
) -> None:
    collector = Collector()
    collector_server = await aiohttp_server(collector.app)
    gpt = FakeUpstream("openai")
    gpt_server = await aiohttp_server(gpt.app)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    proc = _start(tmp_path, port, collector_server.port, GIMA_AGENT="openai",
                  GIMA_OPENAI_BASE_URL=f"http://127.0.0.1:{gpt_server.port}/v1", GIMA_OPENAI_MODEL="gpt-test")
    try:
        async with aiohttp.ClientSession() as session:
            await wait_healthy(session, base, proc)
            async with session.post(f"{base}/api/auth/signup",
                                    json={"email": "otel@example.com", "password": "a good password"}) as resp:
                token = (await resp.json())["accessToken"]
            incoming = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
            async with session.post(f"{base}/api/chat/stream", json={"content": "trace me"},
                                    headers={"Authorization": f"Bearer {token}", "traceparent": incoming}) as resp:
                trace_id = resp.headers["X-Trace-Id"]
                events, _ = parse_sse(await resp.read())
            assert events[-1].name == "done" and trace_id == "4bf92f3577b34da6a3ce929d0e0e4736"
            message_id = events[0].data["messageId"]
        replies = await collector.wait_for("gima.reply")
        servers = [s for s in collector.named("POST /api/chat/stream")]
        assert servers, [s.name for s in collector.spans]
    finally:
        _stop(proc)
    assert proc.returncode == 0  # the buffered spans were flushed at exit without an error
    server, reply = servers[0], replies[0]
    assert _hex(server.trace_id) == trace_id and _hex(server.parent_span_id) == "00f067aa0ba902b7"  # continued
    assert server.kind == 2  # SERVER
    assert _hex(reply.trace_id) == trace_id and reply.parent_span_id == server.span_id
    attrs = {a.key: a.value for a in reply.attributes}
    assert attrs["gima.message_id"].string_value == message_id and attrs["gima.model"].string_value == "gima-openai"
    assert attrs["gima.reply.status"].string_value == "complete" and attrs["gima.reply.events"].int_value == len(events)
    assert [e.name for e in reply.events] == ["first_token", "end"]
    assert any(link.span_id == server.span_id for link in reply.links)
    upstream_calls = [s for s in collector.spans if s.name.startswith("POST ") and s.kind == 3]  # CLIENT
    assert len(upstream_calls) == 1 and upstream_calls[0].parent_span_id == reply.span_id
    sent = gpt.headers[-1]["traceparent"]
    assert sent == f"00-{trace_id}-{_hex(upstream_calls[0].span_id)}-01"  # the upstream continues this span
    stores = [s for s in collector.spans if s.name.startswith("store ")]
    assert any(s.name == "store begin_exchange" and s.parent_span_id == reply.span_id for s in stores)
    assert {r["service.name"] for r in collector.resources} == {"gima-test"}
    assert not [s for s in collector.spans if "delta" in s.name]  # never a span per event


async def test_a_reply_resumed_on_another_process_is_linked_to_the_replys_span(
    tmp_path: Path, aiohttp_server: Any, redis_url: str,
) -> None:
    collector = Collector()
    collector_server = await aiohttp_server(collector.app)
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "secret_key").write_text("shared-secret-for-both-processes-0123456789")
    ports = [free_port(), free_port()]
    bases = [f"http://127.0.0.1:{p}" for p in ports]
    procs = [_start(tmp_path, p, collector_server.port, GIMA_REDIS_URL=redis_url, GIMA_DEMO_TOKENS_PER_S="40",
                    GIMA_DEMO_REPLY_WORDS="40") for p in ports]
    try:
        async with aiohttp.ClientSession() as session:
            for proc, base in zip(procs, bases, strict=True):
                await wait_healthy(session, base, proc)
            async with session.post(f"{bases[0]}/api/auth/signup",
                                    json={"email": "resume@example.com", "password": "a good password"}) as resp:
                auth = {"Authorization": f"Bearer {(await resp.json())['accessToken']}"}
            async with session.post(f"{bases[0]}/api/chat/stream", json={"content": "go"}, headers=auth) as resp:
                start_trace = resp.headers["X-Trace-Id"]
                first = await resp.content.readuntil(b"\n\n")
                while b"messageId" not in first:
                    first = await resp.content.readuntil(b"\n\n")
                message_id = parse_sse(first)[0][0].data["messageId"]
            async with session.get(f"{bases[1]}/api/chat/streams/{message_id}/events",
                                   headers={**auth, "Last-Event-ID": "1"}) as resp:
                resume_trace = resp.headers["X-Trace-Id"]
                rest, _ = parse_sse(await resp.read())
            assert rest[-1].name == "done"
        reply = (await collector.wait_for("gima.reply"))[0]
        resumes = await collector.wait_for("GET /api/chat/streams/{messageId}/events")
    finally:
        _stop(*procs)
    assert _hex(reply.trace_id) == start_trace and resume_trace != start_trace
    resume = resumes[0]
    assert _hex(resume.trace_id) == resume_trace
    assert [(link.trace_id, link.span_id) for link in resume.links] == [(reply.trace_id, reply.span_id)]
