"""Embedding finished messages in the background, and ranking a user's messages by meaning.

The indexer never runs on a reply's path: it takes finished messages in batches while the server is not under
pressure, skips the users who are streaming (as the migration lane does), and charges each user's `embeddings`
bucket once per batch their messages are in (a user whose bucket is empty waits for the next round).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Callable, Sequence

from ..agents.plain import PlainUpstream, post_embeddings
from ..agents.upstream import UpstreamError
from ..errors import ApiError
from ..store.base import Store, StoreUnavailable
from .vectors import nearest, pack

log = logging.getLogger("gima.semantic")

MAX_EMBED_CHARS = 8000  # the start of a long message stands for it (embedding models read a few thousand tokens)
CATCH_UP_BATCHES = 4  # a search embeds at most this many batches of the user's waiting messages first


class SemanticSearch:
    def __init__(self, store: Store, upstream: PlainUpstream, model: str, batch: int,
                 charge: Callable[[str], Any], user_streaming: Callable[[str], bool]) -> None:
        self._store = store
        self._upstream = upstream
        self.model = model
        self._batch = batch
        self._charge = charge  # awaits the user's embeddings bucket; raises ApiError (429) when it is empty
        self._user_streaming = user_streaming

    async def embed(self, texts: Sequence[str], trace_id: str = "-") -> list[list[float]]:
        """One upstream call for the texts; UpstreamError when it fails or answers something else."""
        body = {"model": self._upstream.target.upstream_model(self.model), "input": [t[:MAX_EMBED_CHARS] for t in texts],
                "encoding_format": "float"}
        answer = await post_embeddings(self._upstream, body, trace_id)
        try:
            data = sorted(answer["data"], key=lambda d: int(d["index"]))
            vectors = [[float(v) for v in d["embedding"]] for d in data]
        except (ValueError, KeyError, TypeError) as exc:
            raise UpstreamError("upstream_error", f"the embeddings upstream answered no embeddings ({exc})") from None
        if len(vectors) != len(texts):
            raise UpstreamError("upstream_error", "the embeddings upstream answered a different number of embeddings")
        return vectors

    async def _embed_rows(self, rows: Sequence[tuple[str, str, str]]) -> int:
        vectors = await self.embed([content for _, _, content in rows])
        packed = []
        for (message_id, _, _), vector in zip(rows, vectors, strict=True):
            try:
                packed.append((message_id, pack(vector)))
            except ValueError:
                log.warning("the embeddings upstream gave message %s an unusable vector", message_id)
        return await self._store.save_vectors(self.model, packed)

    async def index_round(self) -> int:
        """Embed one batch of waiting messages; how many were stored."""
        rows = await self._store.messages_to_embed(self.model, self._batch * 4)
        admitted: list[tuple[str, str, str]] = []
        charged: dict[str, bool] = {}
        for row in rows:
            user_id = row[1]
            if user_id not in charged:
                charged[user_id] = not self._user_streaming(user_id) and await self._try_charge(user_id)
            if charged[user_id]:
                admitted.append(row)
            if len(admitted) == self._batch:
                break
        return await self._embed_rows(admitted) if admitted else 0

    async def _try_charge(self, user_id: str) -> bool:
        try:
            await self._charge(user_id)
        except ApiError:
            return False
        return True

    async def catch_up(self, user_id: str) -> None:
        """Before a search: embed what of the user's is still waiting (a few batches at most)."""
        for _ in range(CATCH_UP_BATCHES):
            rows = await self._store.messages_to_embed(self.model, self._batch, user_id)
            if not rows or not await self._embed_rows(rows):
                return

    async def ranked(self, user_id: str, query: str, k: int, trace_id: str) -> list[tuple[str, float]]:
        """The user's k messages closest in meaning to the query, best first."""
        (query_vector,) = await self.embed([query], trace_id)
        candidates = await self._store.user_vectors(user_id, self.model)
        return await asyncio.to_thread(nearest, query_vector, candidates, k)  # the scan stays off the loop

    async def index_forever(self, under_pressure: Callable[[], bool], idle_s: float = 2.0) -> None:
        pause = idle_s
        while True:
            await asyncio.sleep(pause)
            pause = idle_s
            if under_pressure():
                continue
            try:
                if await self.index_round():
                    pause = 0.05  # more may be waiting: the next batch soon, the loop free in between
            except (UpstreamError, OSError, StoreUnavailable) as exc:
                log.warning("embedding messages failed (%s); retrying later", exc)
                pause = idle_s * 5
            except Exception:
                log.exception("embedding messages failed")
                pause = idle_s * 5
