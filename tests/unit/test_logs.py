import json
import logging

from gima_server.observability.logs import JsonFormatter
from gima_server.observability.tracing import current_trace_id


def _record(msg: str, **extra: object) -> logging.LogRecord:
    record = logging.LogRecord("gima.test", logging.INFO, __file__, 1, msg, (), None)
    record.__dict__.update(extra)
    return record


def test_json_lines_carry_the_current_trace_id_and_extras() -> None:
    token = current_trace_id.set("trace-abc")
    try:
        line = JsonFormatter().format(_record("reply ended", messageId="m1", events=12))
    finally:
        current_trace_id.reset(token)
    entry = json.loads(line)
    assert "\n" not in line
    assert entry["msg"] == "reply ended" and entry["traceId"] == "trace-abc" and entry["level"] == "info"
    assert entry["messageId"] == "m1" and entry["events"] == 12


def test_an_explicit_trace_id_wins() -> None:
    entry = json.loads(JsonFormatter().format(_record("x", trace_id="explicit")))
    assert entry["traceId"] == "explicit" and "trace_id" not in entry
