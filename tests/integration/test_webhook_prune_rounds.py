"""Pruning the webhook outbox goes in bounded rounds: one round never holds the process's deliveries for the whole
backlog of old rows (a first prune after months could be millions), and the rounds together delete all of it."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from gima_server.store.sqlite import SqliteStore
from gima_server.webhooks import sender as sender_module
from gima_server.webhooks.model import Endpoint
from gima_server.webhooks.sender import WebhookSender


async def test_a_round_deletes_at_most_its_share_and_the_rounds_delete_everything_old(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(sender_module, "PRUNE_BATCH", 5)
    monkeypatch.setattr(sender_module, "PRUNE_ROUND", 2)  # ten rows a round
    store = SqliteStore(tmp_path / "prune.sqlite3")
    await store.open()
    try:
        await store.save_webhook_endpoint(Endpoint("e1", "http://a.example/hook", "whsec_" + "A" * 32, created_at=1.0))
        for n in range(23):
            await store.create_user(f"u{n}@example.com", "h", f"u{n}", ("user",))  # a user.created delivery each
        for delivery in await store.claim_webhook_deliveries(time.time(), 30, 100):
            await store.record_webhook_try(delivery.id, True, None, 200, None)
        await asyncio.sleep(0.05)
        sender = WebhookSender(store, (1.0,), 5.0, 0.1, retention_s=0.01)
        assert [await sender.prune() for _ in range(4)] == [10, 10, 3, 0]
        assert await store.list_webhook_deliveries("e1", 100) == []
    finally:
        await store.close()
