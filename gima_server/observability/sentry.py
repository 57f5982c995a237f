"""Error reports to Sentry (extra `sentry`, the standard SENTRY_DSN): errors logged with their traceback (an
unhandled error of a request is one) and replies that end internal_error, store_unavailable or upstream_error, each
with its trace id and model. Nothing identifying or written by a user leaves: no request bodies, cookies, headers
that carry credentials, local variables, or message text; every string is passed through the log redactor."""

from __future__ import annotations

import logging
import os
import re
from typing import Any

from .logs import redact
from .tracing import current_trace_id

log = logging.getLogger("gima.sentry")
REPORTED_ENDS = frozenset({"internal_error", "store_unavailable", "upstream_error"})
_SECRET_KEYS = re.compile(r"(?i)authorization|cookie|password|secret|token|api[-_]?key|csrf|session|dsn")
_DROPPED_KEYS = frozenset({"data", "cookies", "query_string", "env", "vars", "user"})
_KEYS = re.compile(r"gima_sk_[A-Za-z0-9_\-]+|sk-[A-Za-z0-9_\-]{8,}|whsec_[A-Za-z0-9+/=]+")
_enabled = False


def init_sentry(environ: dict[str, str] | None = None) -> bool:
    """Start reporting when SENTRY_DSN is set and the extra is installed; free otherwise."""
    global _enabled
    if _enabled:
        return True
    env = os.environ if environ is None else environ
    dsn = env.get("SENTRY_DSN", "")
    if not dsn:
        return False
    try:
        import sentry_sdk
    except ImportError:
        log.warning("SENTRY_DSN is set but sentry-sdk is not installed (pip install 'gima-server[sentry]')")
        return False
    sentry_sdk.init(dsn=dsn, include_local_variables=False, max_request_body_size="never",
                    traces_sample_rate=0.0, before_send=scrub,  # type: ignore[arg-type]  # an Event is a dict
                    before_breadcrumb=_scrub_breadcrumb,
                    environment=env.get("SENTRY_ENVIRONMENT", "production"))
    _enabled = True
    return True


def report_reply_end(end_code: str, trace_id: str, model: str, message_id: str) -> None:
    """A reply that ended with an error worth a look (never its text)."""
    if not _enabled or end_code not in REPORTED_ENDS:
        return
    import sentry_sdk

    with sentry_sdk.new_scope() as scope:
        scope.set_tag("trace_id", trace_id)
        scope.set_tag("model", model)
        scope.set_tag("reply.end", end_code)
        scope.set_context("reply", {"message_id": message_id, "end": end_code})
        sentry_sdk.capture_message(f"reply ended {end_code}", level="error")


def scrub(event: dict[str, Any], hint: dict[str, Any] | None = None) -> dict[str, Any]:
    """before_send: drop what may carry credentials or user text, redact what is left; tag the trace id."""
    cleaned: dict[str, Any] = _clean(event)
    tags = cleaned.setdefault("tags", {})
    if isinstance(tags, dict) and "trace_id" not in tags:
        extra = cleaned.get("extra") or {}
        trace_id = extra.get("trace_id") or extra.get("traceId") or current_trace_id.get()
        if trace_id and trace_id != "-":
            tags["trace_id"] = trace_id
    return cleaned


def _scrub_breadcrumb(crumb: dict[str, Any], hint: dict[str, Any] | None = None) -> dict[str, Any]:
    return _clean(crumb)  # type: ignore[no-any-return]


def _clean(value: Any, key: str = "") -> Any:
    if isinstance(value, dict):
        cleaned = {}
        for k, v in value.items():
            name = str(k)
            if name in _DROPPED_KEYS:
                continue
            cleaned[k] = "[Filtered]" if _SECRET_KEYS.search(name) and not isinstance(v, (dict, list)) else _clean(v, name)
        return cleaned
    if isinstance(value, list):
        if len(value) == 2 and isinstance(value[0], str) and _SECRET_KEYS.search(value[0]):
            return [value[0], "[Filtered]"]  # a header as a [name, value] pair
        return [_clean(item, key) for item in value]
    if isinstance(value, str):
        return _KEYS.sub("[Filtered]", redact(value))
    return value
