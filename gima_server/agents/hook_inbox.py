"""Where a webhook agent's backend posts a reply's events (POST /api/hooks/replies/{replyId}/events) and where the
agent producing that reply reads them. With Redis, any process may take the callback: the events go into a Redis
Stream per reply that the producing process reads; without Redis there is one process and a queue per reply."""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from importlib import resources
from typing import Any, AsyncIterator

from .. import redis_keys
from .upstream import UpstreamError

MAX_EVENTS_KEPT_S = 3600  # a reply's inbox outlives any reply
_POLL_S = 0.05
_DELIVER_SCRIPT = resources.files("gima_server").joinpath("lua/hook_deliver.lua").read_text()


class HookInbox:
    def __init__(self) -> None:
        self._redis: Any | None = None
        self._deliver_script: Any | None = None
        self._queues: dict[str, asyncio.Queue[list[dict[str, Any]]]] = {}
        self._agents: dict[str, str] = {}  # reply id -> agent id, for replies awaiting events here
        self._seen: dict[str, set[str]] = {}

    def attach(self, redis: Any | None) -> None:
        """Redis, when configured (set once the connection exists)."""
        self._redis = redis
        self._deliver_script = None

    async def open(self, reply_id: str, agent_id: str) -> None:
        """Expect events for this reply (before its turn is posted, so that an early callback is kept)."""
        self._queues[reply_id] = asyncio.Queue()
        self._agents[reply_id] = agent_id
        self._seen[reply_id] = set()
        if self._redis is not None:
            await self._redis.set(redis_keys.hook_reply(reply_id), agent_id, ex=MAX_EVENTS_KEPT_S)

    async def close(self, reply_id: str) -> None:
        self._queues.pop(reply_id, None)
        self._agents.pop(reply_id, None)
        self._seen.pop(reply_id, None)
        if self._redis is not None:
            await self._redis.delete(redis_keys.hook_reply(reply_id))

    async def agent_of(self, reply_id: str) -> str | None:
        """The agent a reply awaits events from; None when it awaits none (ended, or never a webhook agent's)."""
        if reply_id in self._agents:
            return self._agents[reply_id]
        if self._redis is None:
            return None
        found = await self._redis.get(redis_keys.hook_reply(reply_id))
        return found.decode() if isinstance(found, bytes) else found

    async def deliver(self, reply_id: str, delivery_id: str, events: list[dict[str, Any]]) -> bool:
        """Hand a batch to the reply's producer; False when this delivery id was taken before (a retry)."""
        if self._redis is None:
            seen, queue = self._seen.get(reply_id), self._queues.get(reply_id)
            if seen is None or queue is None:  # it ended meanwhile: nothing awaits the batch, nothing is kept
                return True
            if delivery_id in seen:
                return False
            seen.add(delivery_id)
            queue.put_nowait(events)
            return True
        if self._deliver_script is None:
            self._deliver_script = self._redis.register_script(_DELIVER_SCRIPT)
        # One script, so that a resent call (its answer lost) neither reads as the backend's retry nor adds twice.
        keys = [redis_keys.hook_delivery(reply_id, delivery_id), redis_keys.hook_inbox(reply_id)]
        taken = await self._deliver_script(keys=keys, args=[secrets.token_hex(8), json.dumps(events), MAX_EVENTS_KEPT_S])
        return bool(taken)

    async def events(self, reply_id: str, silence_s: float) -> AsyncIterator[dict[str, Any]]:
        """The reply's events in the order posted; upstream_timeout after silence_s without any."""
        last_heard = time.monotonic()
        last_id = "0-0"
        while True:
            if self._redis is None:
                queue = self._queues[reply_id]
                try:
                    batches = [await asyncio.wait_for(queue.get(), timeout=max(0.0, last_heard + silence_s
                                                                                - time.monotonic()))]
                except TimeoutError:
                    batches = []
            else:
                found = await self._redis.xread({redis_keys.hook_inbox(reply_id): last_id}, count=100)
                batches = []
                for _, entries in found or ():
                    for entry_id, fields in entries:
                        last_id = entry_id
                        batches.append(json.loads(fields[b"events"] if b"events" in fields else fields["events"]))
                if not batches:
                    await asyncio.sleep(_POLL_S)
            for batch in batches:
                last_heard = time.monotonic()
                for event in batch:
                    yield event
            if time.monotonic() - last_heard > silence_s:
                raise UpstreamError("upstream_timeout", f"the webhook backend sent nothing for {silence_s:g} s")
