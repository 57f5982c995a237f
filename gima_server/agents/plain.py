"""OpenAI-compatible upstreams that answer once rather than stream tokens: embeddings and audio.

Each has its session, a breaker and the connect limit of the streaming upstreams; a call is one POST whose
answer the caller reads (JSON, or audio bytes passed on as they come). Nothing is retried here: an embeddings
batch is retried by its indexer, and a client's upload cannot be replayed.
"""

from __future__ import annotations

from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Mapping

import aiohttp

from ..observability.tracing import outgoing_traceparent
from .breaker import CircuitBreaker, CircuitOpen
from .catalog import Catalog
from .upstream import UpstreamError, api_root, retry_after_s


@dataclass(frozen=True, slots=True)
class PlainTarget:
    """Where a purpose (embeddings, audio) is sent: the upstream's root, key and model."""

    name: str  # for logs and errors: "embeddings" or "audio"
    base_url: str
    api_key: str = field(repr=False)
    model: str  # the upstream's name for the model ("" : the client's own `model` is sent)
    alias: str = ""  # an agents-file id that clients may name instead of the upstream's model name

    def upstream_model(self, requested: str) -> str:
        """What the upstream is asked for: the configured model for its alias (or when none is named), else as named."""
        if self.model and requested in ("", self.alias):
            return self.model
        return requested


class PlainUpstream:
    def __init__(self, target: PlainTarget, connect_s: float, total_s: float, breaker: CircuitBreaker) -> None:
        self.target = target
        self.breaker = breaker
        self._root = api_root(target.base_url)
        self._timeout = aiohttp.ClientTimeout(total=total_s, connect=connect_s, sock_connect=connect_s)
        self._session: aiohttp.ClientSession | None = None

    def _headers(self, trace_id: str) -> dict[str, str]:
        headers = {"traceparent": outgoing_traceparent(trace_id)}
        if self.target.api_key:
            headers["Authorization"] = f"Bearer {self.target.api_key}"
        return headers

    @asynccontextmanager
    async def post(self, path: str, trace_id: str, *, json: Mapping[str, Any] | None = None, data: Any = None,
                   headers: Mapping[str, str] | None = None) -> AsyncIterator[aiohttp.ClientResponse]:
        """The upstream's answer, whatever its status (the caller judges it); UpstreamError when there is none."""
        name = self.target.name
        try:
            self.breaker.before_call()
        except CircuitOpen as exc:
            raise UpstreamError("upstream_unavailable", f"the {name} upstream is failing; not calling it",
                                exc.retry_after_s, reason="breaker_open") from None
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        try:
            async with self._session.post(self._root + path, json=json, data=data,
                                          headers={**self._headers(trace_id), **(headers or {})}) as response:
                if response.status >= 500:
                    self.breaker.failure()
                else:
                    self.breaker.success()
                yield response
        except TimeoutError:
            self.breaker.failure()
            raise UpstreamError("upstream_timeout", f"the {name} upstream did not answer in time") from None
        except aiohttp.ClientConnectionError:
            self.breaker.failure()
            raise UpstreamError("upstream_unavailable", f"cannot reach the {name} upstream") from None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


async def post_embeddings(upstream: PlainUpstream, body: Mapping[str, Any], trace_id: str) -> dict[str, Any]:
    """One /v1/embeddings call: the answer with its `data` list; UpstreamError when there is none."""
    async with upstream.post("/v1/embeddings", trace_id, json=body) as response:
        if response.status != 200:
            raise await refused(response, "embeddings")
        try:
            answer = await response.json(content_type=None)
        except ValueError:
            answer = None
    if not isinstance(answer, dict) or not isinstance(answer.get("data"), list):
        raise UpstreamError("upstream_unavailable", "the embeddings upstream answered something that is not a list "
                            "of embeddings", 5.0)
    return answer


async def refused(response: aiohttp.ClientResponse, name: str) -> UpstreamError:
    """A non-2xx answer as an error: the upstream's own message for a 4xx (the request's fault), none for the rest."""
    if response.status == 429 or response.status >= 500:
        return UpstreamError("upstream_unavailable", f"the {name} upstream answered {response.status}",
                             retry_after_s(response.headers.get("Retry-After")))
    try:
        body = await response.json(content_type=None)
        detail = str(body["error"]["message"])[:500]
    except (ValueError, KeyError, TypeError, aiohttp.ClientError):
        detail = f"status {response.status}"
    return UpstreamError("upstream_error", f"the {name} upstream refused the request: {detail}")


def plain_target(purpose: str, catalog: Catalog | None, base_url: str, api_key: str, model: str) -> PlainTarget | None:
    """The upstream for `purpose` (embeddings or audio): the agents file's entry named for it, else the variables."""
    named = getattr(catalog, purpose) if catalog is not None else None
    if catalog is not None and named:
        entry = catalog.entries[named]
        return PlainTarget(purpose, entry.base_url, entry.api_key, entry.model, entry.id)
    if base_url:
        return PlainTarget(purpose, base_url, api_key, model)
    return None
