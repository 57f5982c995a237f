"""aiohttp's parser quotes a rejected header line, credentials included, in its error log: they are redacted.

Every other test is watched by the suite-wide fixture (conftest: no token, cookie, password or key the suite
used may appear in any log record); this one sends what only a broken or hostile client sends."""

from __future__ import annotations

import asyncio
import logging

import pytest

from ..conftest import MakeClient, quick_user


async def test_a_rejected_request_line_with_a_token_is_logged_redacted(
    make_client: MakeClient, caplog: pytest.LogCaptureFixture
) -> None:
    client = await make_client()
    alice = await quick_user(client, "alice@example.com")  # a real token, watched by the suite's fixture
    reader, writer = await asyncio.open_connection("127.0.0.1", client.port)
    writer.write(f"GET /api/auth/me HTTP/1.1\r\nHost: x\r\nCookie: gima_session=abcdefghijklmnop\r\n"
                 f"Authorization: Bearer {alice.token}\x01\r\n\r\n".encode())
    answer = await reader.read(4096)
    writer.close()
    assert answer.startswith(b"HTTP/1.") and b" 400 " in answer.split(b"\r\n", 1)[0]
    await asyncio.sleep(0.05)
    logged = [r for r in caplog.records if r.name == "aiohttp.server" and r.levelno >= logging.ERROR]
    assert logged, "aiohttp logs a rejected request; this test must see that record"
    text = "\n".join((r.exc_text or "") + r.getMessage() for r in logged)
    assert "[redacted]" in text and alice.token not in text and alice.token[:40] not in text
