"""Calling a streaming LLM upstream safely: tiered time limits, retries only while nothing was sent, a breaker.

Rules: connect within connect_s; the first token within first_token_s; the whole reply within total_s.
Connection errors, 429 and 5xx are retried with exponential backoff and full jitter (honouring Retry-After)
only before the first token; other 4xx never. The breaker counts connection errors, timeouts and 5xx.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import random
import time
from dataclasses import dataclass
from typing import Any, AsyncIterator, Callable, Mapping

import aiohttp

from ..observability import otel
from .breaker import CircuitBreaker, CircuitOpen
from .sse_client import SseMessage, sse_messages

_BACKOFF_BASE_S = 0.25
_BACKOFF_CAP_S = 4.0


class UpstreamError(Exception):
    """Ends a reply with error{code}: upstream_timeout, upstream_unavailable or upstream_error."""

    def __init__(self, code: str, message: str, retry_after_s: float | None = None, reason: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.retry_after_s = retry_after_s
        self.reason = reason or code  # why, for a fallback's `model` event: the code, or breaker_open


@dataclass(frozen=True, slots=True)
class UpstreamLimits:
    connect_s: float = 3.0
    first_token_s: float = 8.0
    total_s: float = 120.0
    max_retries: int = 2


def api_root(base_url: str) -> str:
    """The server root under which /v1/... lives: tools document the base both with and without /v1."""
    root = base_url.strip().rstrip("/")
    return root[: -len("/v1")] if root.endswith("/v1") else root


def retry_after_s(header: str | None) -> float | None:
    """Retry-After as seconds (RFC 9110: delay-seconds or an HTTP date)."""
    if not header:
        return None
    if header.strip().isdigit():
        return float(header.strip())
    try:
        when = email.utils.parsedate_to_datetime(header)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


class Upstream:
    """One upstream endpoint: its HTTP session, its breaker, and the retry rules."""

    def __init__(
        self,
        name: str,
        base_url: str,
        limits: UpstreamLimits,
        breaker: CircuitBreaker,
        rng: Callable[[], float] = random.random,
    ) -> None:
        self.name = name
        self.base_url = api_root(base_url)
        self.limits = limits
        self.breaker = breaker
        self._rng = rng
        self._session: aiohttp.ClientSession | None = None

    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            timeout = aiohttp.ClientTimeout(total=None, connect=self.limits.connect_s, sock_connect=self.limits.connect_s)
            self._session = aiohttp.ClientSession(timeout=timeout, raise_for_status=False)
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def call(self, path: str, body: Mapping[str, Any], headers: Mapping[str, str]) -> UpstreamCall:
        return UpstreamCall(self, path, body, headers)

    def backoff_s(self, attempt: int, server_says: float | None) -> float:
        jitter = self._rng() * min(_BACKOFF_CAP_S, _BACKOFF_BASE_S * 2.0**attempt)
        return max(jitter, server_says or 0.0)


class UpstreamCall:
    """One streamed request. The provider calls first_token() when content arrives; from then on nothing is
    retried, and the deadline for each read moves from the first-token limit to the whole-reply limit."""

    def __init__(self, upstream: Upstream, path: str, body: Mapping[str, Any], headers: Mapping[str, str]) -> None:
        self._up = upstream
        self._path = path
        self._body = body
        self._headers = headers
        now = time.monotonic()
        self._first_deadline = now + upstream.limits.first_token_s
        self._total_deadline = now + upstream.limits.total_s
        self._first_token_seen = False

    def first_token(self) -> None:
        self._first_token_seen = True

    def _read_timeout_s(self) -> float:
        deadline = self._total_deadline if self._first_token_seen else min(self._first_deadline, self._total_deadline)
        return max(0.001, deadline - time.monotonic())

    def _timeout_error(self) -> UpstreamError:
        which = "whole reply" if self._first_token_seen else "first token"
        return UpstreamError("upstream_timeout", f"{self._up.name}: no {which} within its time limit")

    async def messages(self) -> AsyncIterator[SseMessage]:
        attempt = 0
        while True:
            response = await self._open(attempt)
            if response is None:
                attempt += 1
                continue
            sent_any = False
            try:
                async for message in sse_messages(response, self._read_timeout_s):
                    sent_any = True
                    yield message
            except TimeoutError:
                self._up.breaker.failure()
                raise self._timeout_error() from None
            except (aiohttp.ClientPayloadError, aiohttp.ClientConnectionError) as exc:
                self._up.breaker.failure()
                if not sent_any and not self._first_token_seen and self._may_retry(attempt, None):
                    await asyncio.sleep(self._up.backoff_s(attempt, None))
                    attempt += 1
                    continue
                dropped = f"{self._up.name}: connection dropped ({type(exc).__name__})"
                raise UpstreamError("upstream_unavailable", dropped) from None
            finally:
                response.close()  # not release(): an unfinished stream must not be paid for any longer
            return

    def _may_retry(self, attempt: int, server_says: float | None) -> bool:
        if attempt >= self._up.limits.max_retries:
            return False
        return time.monotonic() + self._up.backoff_s(attempt, server_says) < self._first_deadline

    async def _open(self, attempt: int) -> aiohttp.ClientResponse | None:
        """The 200 response to stream from; None after a failed attempt that will be retried; else raise."""
        try:
            self._up.breaker.before_call()
        except CircuitOpen as exc:
            message = f"{self._up.name} is failing; not calling it"
            raise UpstreamError("upstream_unavailable", message, exc.retry_after_s, reason="breaker_open") from None
        url = self._up.base_url + self._path
        try:
            with otel.client_span(f"POST {self._up.name}", {"url.full": url, "gima.attempt": attempt}) as span:
                headers = self._headers if span is None else {**self._headers, "traceparent": otel.traceparent_of(span)}
                async with asyncio.timeout(self._read_timeout_s()):
                    response = await self._up.session().post(url, json=self._body, headers=headers)
                if span is not None:
                    span.set_attribute("http.response.status_code", response.status)
        except (TimeoutError, aiohttp.ClientConnectionError) as exc:
            self._up.breaker.failure()
            if self._may_retry(attempt, None):
                await asyncio.sleep(self._up.backoff_s(attempt, None))
                return None
            if isinstance(exc, TimeoutError):
                raise self._timeout_error() from None
            raise UpstreamError("upstream_unavailable", f"{self._up.name}: cannot connect") from None
        if response.status == 200:
            self._up.breaker.success()  # it answers; a failure later in the stream counts against it again
            return response
        server_says = retry_after_s(response.headers.get("Retry-After"))
        response.close()
        if response.status == 429 or response.status >= 500:
            if response.status >= 500:
                self._up.breaker.failure()
            if self._may_retry(attempt, server_says):
                await asyncio.sleep(self._up.backoff_s(attempt, server_says))
                return None
            raise UpstreamError("upstream_unavailable", f"{self._up.name} answered {response.status}", server_says)
        self._up.breaker.success()  # a 4xx is our request's fault, not the upstream failing
        raise UpstreamError("upstream_error", f"{self._up.name} refused the request ({response.status})")


def json_frame(data: str) -> dict[str, Any]:
    """One streamed JSON object; anything else from the upstream is a malformed frame."""
    try:
        frame = json.loads(data)
    except ValueError:
        raise UpstreamError("upstream_error", "malformed frame from the upstream") from None
    if not isinstance(frame, dict):
        raise UpstreamError("upstream_error", "malformed frame from the upstream")
    return frame
