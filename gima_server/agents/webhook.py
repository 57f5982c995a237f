"""An agent whose backend works asynchronously (`kind = "webhook"`): the turn is POSTed to it, signed as a Standard
Webhook, and the backend POSTs the reply's events back to the callback URL later, in signed batches
(agents/hook_routes.py). A reply stopped before the backend's `done` sends it a signed cancel call."""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from datetime import UTC, datetime
from typing import Any, AsyncIterator

import aiohttp
from standardwebhooks.webhooks import Webhook

from .base import AgentEvent, AgentRequest, agent_phase, delta, usage
from .chat_messages import alternating_turns, system_text
from .hook_inbox import HookInbox
from .upstream import UpstreamError

log = logging.getLogger("gima.agents.webhook")


class WebhookAgent:
    def __init__(self, agent_id: str, url: str, secret: str, timeout_s: float, callback_base: str,
                 inbox: HookInbox) -> None:
        self.agent_id = agent_id
        self._url = url
        self._signer = Webhook(secret)
        self._timeout_s = timeout_s
        self._callback_base = callback_base.rstrip("/")
        self._inbox = inbox
        self._session: aiohttp.ClientSession | None = None

    def breakers(self) -> dict[str, str]:
        return {}

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def stream(self, request: AgentRequest) -> AsyncIterator[AgentEvent]:
        reply_id = request.reply_id
        await self._inbox.open(reply_id, self.agent_id)
        finished = False
        try:
            messages = alternating_turns(request)
            system = system_text("", request)
            if system:
                messages = [{"role": "system", "content": system}, *messages]
            await self._post({"type": "reply.requested", "replyId": reply_id, "chatId": request.chat_id,
                              "messages": messages, "options": dict(request.options),
                              "callbackUrl": f"{self._callback_base}/api/hooks/replies/{reply_id}/events"})
            async for event in self._inbox.events(reply_id, self._timeout_s):
                kind = event.get("type")
                if kind == "delta":
                    yield delta(str(event.get("agent") or "assistant"), str(event.get("text", "")))
                elif kind == "agent":
                    yield agent_phase(str(event.get("agent") or "assistant"), str(event.get("phase", "start")))
                elif kind == "done":
                    finished = True
                    counted = event.get("usage")
                    if isinstance(counted, dict):
                        yield usage(int(counted.get("inputTokens", 0)), int(counted.get("outputTokens", 0)))
                    return
                elif kind == "error":
                    finished = True
                    raise UpstreamError("upstream_error", f"{self.agent_id}: {str(event.get('message', 'failed'))[:200]}")
        finally:
            await self._inbox.close(reply_id)
            if not finished:  # stopped, timed out or superseded: the backend may stop working on it
                await asyncio.shield(self._cancel(reply_id))

    async def _cancel(self, reply_id: str) -> None:
        try:
            await self._post({"type": "reply.cancelled", "replyId": reply_id}, timeout_s=5.0)
        except UpstreamError as exc:
            log.warning("the webhook backend %s was not told of a cancel (%s)", self.agent_id, exc.message)

    async def _post(self, body: dict[str, Any], timeout_s: float | None = None) -> None:
        if self._session is None:
            self._session = aiohttp.ClientSession(headers={"User-Agent": "gima-server webhook agent"})
        payload = json.dumps(body, separators=(",", ":"))
        delivery_id = "msg_" + uuid.uuid4().hex
        now = datetime.now(tz=UTC)
        headers = {"webhook-id": delivery_id, "webhook-timestamp": str(int(now.timestamp())),
                   "webhook-signature": self._signer.sign(delivery_id, now, payload),
                   "Content-Type": "application/json"}
        timeout = aiohttp.ClientTimeout(total=timeout_s or min(self._timeout_s, 30.0))
        try:
            async with self._session.post(self._url, data=payload.encode(), headers=headers, timeout=timeout,
                                          allow_redirects=False) as resp:
                await resp.read()
                status = resp.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise UpstreamError("upstream_unavailable", f"{self.agent_id}: {type(exc).__name__}") from None
        if not 200 <= status < 300:
            code = "upstream_unavailable" if status >= 500 or status == 429 else "upstream_error"
            raise UpstreamError(code, f"{self.agent_id}: the backend answered {status}")
