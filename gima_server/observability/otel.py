"""OpenTelemetry traces (extra `otel`; on when the standard OTEL_EXPORTER_OTLP_[TRACES_]ENDPOINT is set): a server
span per request whose trace id is the request's X-Trace-Id, a `gima.reply` span per reply (its span id derived from
the message id, so that a resume on any process can link to it), client spans for upstream calls, spans for store
and Redis calls — never one per event. Off, every helper here is a check of one global and nothing else."""

from __future__ import annotations

import contextvars
import hashlib
import logging
import os
from contextlib import contextmanager
from typing import Any, Iterator, Mapping

log = logging.getLogger("gima.otel")
_tracer: Any | None = None
_next_span_id: contextvars.ContextVar[int | None] = contextvars.ContextVar("next_span_id", default=None)


def enabled() -> bool:
    return _tracer is not None


def init_otel(environ: Mapping[str, str] | None = None) -> bool:
    """Export spans over OTLP/HTTP when an OTLP endpoint is configured and the extra is installed."""
    global _tracer
    if _tracer is not None:
        return True
    env = os.environ if environ is None else environ
    if not (env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")):
        return False
    if env.get("OTEL_SDK_DISABLED", "").lower() == "true":
        return False
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
        from opentelemetry.sdk.trace.id_generator import RandomIdGenerator
    except ImportError:
        log.warning("OTEL_EXPORTER_OTLP_ENDPOINT is set but the otel extra is not installed "
                    "(pip install 'gima-server[otel]')")
        return False

    class _Ids(RandomIdGenerator):
        """Random ids, except a span id asked for ahead (a reply's, derived from its message id)."""

        def generate_span_id(self) -> int:
            wanted = _next_span_id.get()
            if wanted is not None:
                _next_span_id.set(None)
                return wanted
            return super().generate_span_id()

    resource = Resource.create({"service.name": env.get("OTEL_SERVICE_NAME") or "gima-server"})
    provider = TracerProvider(resource=resource, id_generator=_Ids())
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    _tracer = provider.get_tracer("gima-server")
    return True


def shutdown_otel() -> None:
    """Flush what is buffered (at exit)."""
    global _tracer
    if _tracer is None:
        return
    from opentelemetry import trace

    provider = getattr(_tracer, "_tracer_provider", None) or trace.get_tracer_provider()
    with_shutdown = getattr(provider, "shutdown", None)
    if with_shutdown is not None:
        with_shutdown()
    _tracer = None


def trace_int(trace_id: str) -> int:
    """A request's trace id as OpenTelemetry's 128-bit id (a non-hex X-Request-Id is hashed, as traceparent does)."""
    hex_id = trace_id if len(trace_id) == 32 and all(c in "0123456789abcdef" for c in trace_id) else \
        hashlib.sha256(trace_id.encode()).hexdigest()[:32]
    return int(hex_id, 16)


def reply_span_id(message_id: str) -> int:
    return int(hashlib.sha256(f"gima.reply:{message_id}".encode()).hexdigest()[:16], 16) or 1


def _remote_parent(trace_id: str, parent_span_hex: str | None) -> Any:
    from opentelemetry import trace
    from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

    parent_span = int(parent_span_hex, 16) if parent_span_hex else int.from_bytes(os.urandom(8), "big") or 1
    context = SpanContext(trace_int(trace_id), parent_span, is_remote=True, trace_flags=TraceFlags(TraceFlags.SAMPLED))
    return trace.set_span_in_context(NonRecordingSpan(context))


@contextmanager
def server_span(name: str, trace_id: str, traceparent: str | None, attributes: dict[str, Any]) -> Iterator[Any]:
    """The request's span: its trace id is the X-Trace-Id (continuing an incoming traceparent's parent span)."""
    assert _tracer is not None
    from opentelemetry.trace import SpanKind

    parent_span = None
    if traceparent:
        parts = traceparent.strip().lower().split("-")
        if len(parts) == 4 and len(parts[2]) == 16 and parts[1] == f"{trace_int(trace_id):032x}":
            parent_span = parts[2]
    with _tracer.start_as_current_span(name, context=_remote_parent(trace_id, parent_span), kind=SpanKind.SERVER,
                                       attributes=attributes) as span:
        yield span


def start_reply_span(message_id: str, trace_id: str, model: str) -> Any | None:
    """A reply's span, under the request that started it (the reply outlives it), with a span id any process can
    derive from the message id."""
    if _tracer is None:
        return None
    from opentelemetry import trace
    from opentelemetry.trace import Link

    current = trace.get_current_span().get_span_context()
    links = [Link(current)] if current.is_valid else []
    token = _next_span_id.set(reply_span_id(message_id))
    try:
        parent = None if current.is_valid and current.trace_id == trace_int(trace_id) else _remote_parent(trace_id, None)
        return _tracer.start_span("gima.reply", context=parent, links=links,
                                  attributes={"gima.message_id": message_id, "gima.model": model})
    finally:
        _next_span_id.reset(token)


def make_current(span: Any) -> None:
    """Make the span current for the rest of this task (a reply's own task: nothing to restore after)."""
    from opentelemetry import context, trace

    context.attach(trace.set_span_in_context(span))


def end_reply_span(span: Any, end_code: str, status: str, events: int, model: str) -> None:
    span.set_attributes({"gima.reply.status": status, "gima.reply.end": end_code, "gima.reply.events": events,
                         "gima.model": model})
    span.add_event("end", {"gima.reply.end": end_code})
    span.end()


def link_resume(span: Any | None, message_id: str, reply_trace_id: str) -> None:
    """A resume's server span points at the reply it reads (on whichever process produces it)."""
    if _tracer is None or span is None:
        return
    from opentelemetry.trace import SpanContext, TraceFlags

    context = SpanContext(trace_int(reply_trace_id), reply_span_id(message_id), is_remote=True,
                          trace_flags=TraceFlags(TraceFlags.SAMPLED))
    span.add_link(context, {"gima.message_id": message_id})
    span.set_attribute("gima.message_id", message_id)


@contextmanager
def client_span(name: str, attributes: dict[str, Any]) -> Iterator[Any | None]:
    """A call this server makes (an upstream, the store, Redis): a child of whatever span is current."""
    if _tracer is None:
        yield None
        return
    from opentelemetry.trace import SpanKind

    with _tracer.start_as_current_span(name, kind=SpanKind.CLIENT, attributes=attributes) as span:
        yield span


def traceparent_of(span: Any) -> str:
    context = span.get_span_context()
    return f"00-{context.trace_id:032x}-{context.span_id:016x}-01"
