"""Every secret the suite hands out or uses, so that a fixture can prove none of them reached a log line."""

from __future__ import annotations

import logging

SECRETS: set[str] = set()
_MIN_CHARS = 12  # shorter strings would match by accident


def remember(*secrets: str) -> None:
    SECRETS.update(s for s in secrets if s and len(s) >= _MIN_CHARS)


def record_text(record: logging.LogRecord) -> str:
    """Everything of a record that a formatter could print: the message, extra fields, the traceback."""
    parts = [record.getMessage(), repr({k: v for k, v in vars(record).items() if k not in ("msg", "args")})]
    if record.exc_info:
        parts.append(logging.Formatter().formatException(record.exc_info))
    if record.exc_text:
        parts.append(record.exc_text)
    return "\n".join(parts)


def leaks(records: list[logging.LogRecord]) -> list[tuple[str, str]]:
    return [(r.name, secret[:8] + "…") for r in records for secret in SECRETS if secret in record_text(r)]
