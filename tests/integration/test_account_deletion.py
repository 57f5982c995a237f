"""Deleting an account (the user, confirming with the password, or an admin from the command line): every
chat, message, session, key and import of it goes, its open streams and WebSockets end, and nobody else's
data is touched."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

from aiohttp import WSMsgType

from gima_server import appkeys

from ..conftest import DEFAULT_PASSWORD, MakeClient, log_in, same_origin, sign_up
from ..secrets_watch import remember
from ..sse import ends_soon, read_until

SLOW = {"demo_tokens_per_s": 20, "demo_reply_words": 400}


async def test_a_user_deletes_their_account_and_everything_of_it_ends(make_client: MakeClient) -> None:
    client = await make_client(**SLOW)
    alice = await sign_up(client, "alice@example.com")
    bob = await sign_up(client, "bob@example.com")
    other_device = await log_in(client, "alice@example.com")
    key = (await (await client.post("/api/keys", json={"name": "k"}, headers=alice.headers)).json())["key"]
    remember(key)
    stream = await client.post("/api/chat/stream", json={"content": "a long one"}, headers=other_device.headers)
    first = await read_until(stream, lambda ev: len(ev) >= 2)
    ws = await client.ws_connect("/ws", headers={**alice.headers, **same_origin(client)})
    bobs, _ = await bob.stream("bob's own words")

    wrong = await client.delete("/api/auth/me", json={"password": "not the password"}, headers=alice.headers)
    assert wrong.status == 401
    missing = await client.delete("/api/auth/me", json={}, headers=alice.headers)
    assert missing.status == 400
    by_key = await client.delete("/api/auth/me", json={"password": DEFAULT_PASSWORD},
                                 headers={"Authorization": f"Bearer {key}"})
    assert by_key.status == 403
    assert (await client.get("/api/auth/me", headers=alice.headers)).status == 200  # nothing happened yet

    done = await client.delete("/api/auth/me", json={"password": DEFAULT_PASSWORD}, headers=alice.headers)
    assert done.status == 204
    assert await ends_soon(stream)  # the other device's stream, too
    closed = await asyncio.wait_for(ws.receive(), 2)
    assert closed.type == WSMsgType.CLOSE and closed.data == 1008
    for token in (alice.token, other_device.token, key):
        assert (await client.get("/api/chats", headers={"Authorization": f"Bearer {token}"})).status == 401
    store = client.app[appkeys.STORE]
    user_id = alice.user["id"]
    assert await store.get_user(user_id) is None and await store.list_chats(user_id, None, 10) == []
    assert await store.list_sessions(user_id) == [] and await store.list_api_keys(user_id) == []
    assert await store.message_owner(first[0].data["messageId"]) is None
    relogin = await client.post("/api/auth/login", json={"email": "alice@example.com", "password": DEFAULT_PASSWORD},
                                headers=same_origin(client))
    assert relogin.status == 401
    assert (await bob.messages(bobs[0].data["chatId"]))[-1]["content"] == bobs[-1].data["content"]


def test_an_admin_deletes_a_user_from_the_command_line(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIMA_")}
    env.update(GIMA_DATA_DIR=str(tmp_path), GIMA_LOG_FORMAT="text")

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "gima_server", *args], env=env, capture_output=True, text=True,
                              timeout=60)

    made = cli("user", "add", "gone@example.com")
    remember(made.stdout.split("password: ")[-1].strip())
    assert made.returncode == 0, made.stderr
    assert cli("keys", "create", "gone@example.com", "k").returncode == 0
    refused = cli("user", "delete", "gone@example.com")
    assert refused.returncode == 2 and "--yes" in refused.stderr
    deleted = cli("user", "delete", "gone@example.com", "--yes")
    assert deleted.returncode == 0 and "deleted gone@example.com" in deleted.stdout, deleted.stderr
    assert cli("user", "sessions", "gone@example.com").returncode == 1  # no such user any more
    assert cli("user", "delete", "gone@example.com", "--yes").returncode == 1
