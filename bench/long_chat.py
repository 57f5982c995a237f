"""What a long chat costs a reply's start (issue 27): replies in chats of 2,000 stored messages against replies in
new chats, on the same server, in one run.

  python -m bench.long_chat                      # 2,000 replies each way, 50 at a time (about a minute)
  python -m bench.long_chat --replies 500

The server is pinned to core 0 and this load generator to core 1. Each of 50 users has one chat of 2,000 messages
(as an import would leave it: user questions of a line, replies of ~200 words) written straight into the store.
Turnover, unpaced (the demo agent answers at once): each user sends its messages one after another, first each
into a new chat, then into a chat of 80 messages (a little more than the budget holds), then into its long chat.
Reported per phase: replies/s, time to first event p50/p99, the server's CPU per reply; then the long chat's CPU
per reply as a ratio to the 80-message chat's (PASS ≤ 1.10: the cost is bounded by the model's budget, not by the
chat's length) and, for what the history costs at all, to the new chat's.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .common import free_port, start_py_spy, stop_py_spy
from .load import _seed, _wait_healthy
from .paced import Server, Stream, _cpu_s, _pct, _pinned, read_stream

USERS = 50
MESSAGES = 2_000
SHORT = 80  # a little more than the demo's default budget (8,192 tokens) holds of these messages
REPLY_TEXT = " ".join(["streams resume from the last event id the client saw, so nothing is lost"] * 14)


async def _long_chats(data_dir: Path, users: int, messages: int = MESSAGES, tag: str = "long") -> list[str]:
    """One chat of `messages` messages per user, written in bulk; the chat ids in user order."""
    from gima_server.store.rows import TABLES
    from gima_server.store.sqlite import SqliteStore

    tables = {t.name: t for t in TABLES}
    store = SqliteStore(data_dir / "gima.sqlite3")
    await store.open()
    chat_ids = []
    try:
        start = time.time() - 10 * messages
        for i in range(users):
            user = await store.get_user_by_email(f"load{i}@example.com")
            assert user is not None
            chat_id = f"{tag}-{i}"
            chat_ids.append(chat_id)
            await store.write_rows(tables["chats"], [{"id": chat_id, "user_id": user.id, "title": "Long chat",
                                                      "created_at": start, "updated_at": start}])
            rows = []
            for n in range(messages):
                user_turn = n % 2 == 0
                rows.append({"id": f"{chat_id}-{n}", "chat_id": chat_id, "user_id": user.id,
                             "role": "user" if user_turn else "assistant",
                             "content": f"question {n}: how do streams resume?" if user_turn else REPLY_TEXT,
                             "status": "complete", "finish_reason": None if user_turn else "stop",
                             "event_count": 0 if user_turn else 3, "fence": 0, "input_tokens": None,
                             "output_tokens": None, "receipt": None, "sections": None, "seq": n + 1,
                             "created_at": start + n, "model": None, "context_messages": None})
            await store.write_rows(tables["messages"], rows)
    finally:
        await store.close()
    return chat_ids


async def _turnover(server: Server, replies: int, chat_ids: list[str] | None, profile: str = "") -> dict[str, object]:
    per_user = replies // USERS
    spy = await start_py_spy(server.pid, profile, 200) if profile else None

    async def user(i: int) -> list[Stream]:
        seen = []
        for n in range(per_user):
            body: dict[str, object] = {"content": f"message {n} of user {i}"}
            if chat_ids is not None:
                body["chatId"] = chat_ids[i]
            seen.append(await read_stream(server, i, "POST", server.path, json.dumps(body).encode()))
        return seen

    cpu, t0 = _cpu_s(server.pid), time.perf_counter()
    streams = [s for group in await asyncio.gather(*(user(i) for i in range(USERS))) for s in group]
    elapsed, cpu_used = time.perf_counter() - t0, _cpu_s(server.pid) - cpu
    stop_py_spy(spy)
    ttfe = [s.first - s.started for s in streams if s.first is not None]
    return {"replies": len(streams), "ok": sum(s.ok for s in streams), "replies_per_s": round(len(streams) / elapsed, 1),
            "ttfe_ms": {"p50": _pct(ttfe, 0.5), "p99": _pct(ttfe, 0.99)},
            "cpu_ms_per_reply": round(cpu_used / len(streams) * 1000, 3)}


async def main_async(replies: int, profile: str = "") -> dict[str, dict[str, object]]:
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="bench-long-chat-") as tmp:
        tokens = await _seed(Path(tmp), USERS)
        chat_ids = await _long_chats(Path(tmp), USERS)
        short_ids = await _long_chats(Path(tmp), USERS, SHORT, "short")
        env = {k: v for k, v in os.environ.items() if not k.startswith("GIMA_")}
        env.update({"GIMA_DATA_DIR": tmp, "GIMA_LOG_LEVEL": "warning", "GIMA_RATE_LIMITS": "off",
                    "GIMA_DEMO_TOKENS_PER_S": "0", "GIMA_DEMO_FIRST_TOKEN_MS": "0", "GIMA_DEMO_REPLY_WORDS": "60",
                    "GIMA_DRAIN_S": "1", "GIMA_MAX_ACTIVE_REPLIES": "20000", "GIMA_ADMISSION_QUEUE": "20000",
                    "GIMA_MAX_REPLIES_PER_USER": "100"})
        proc = subprocess.Popen(_pinned(0, [sys.executable, "-m", "gima_server", "--port", str(port)]), env=env,
                                stdout=subprocess.DEVNULL)
        try:
            await _wait_healthy(f"http://127.0.0.1:{port}", proc)
            server = Server("gima", port, proc.pid, "/api/chat/stream", tokens)
            await _turnover(server, USERS * 2, None)  # warm up
            rows = {"new chats": await _turnover(server, replies, None, profile and f"{profile}/new.txt"),
                    f"{SHORT}-message chats": await _turnover(server, replies, short_ids),
                    "2,000-message chats": await _turnover(server, replies, chat_ids, profile and f"{profile}/long.txt")}
            rows["new chats, again"] = await _turnover(server, replies, None)  # the noise between two equal runs
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=60)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--replies", type=int, default=2_000)
    parser.add_argument("--profile", default="", help="a directory for py-spy profiles of both phases (raw format)")
    args = parser.parse_args()
    os.sched_setaffinity(0, {1})
    rows = asyncio.run(main_async(args.replies, args.profile))
    for name, row in rows.items():
        print(json.dumps({"scenario": name, **row}))
    cpu = {name: float(str(row["cpu_ms_per_reply"])) for name, row in rows.items()}
    new = (cpu["new chats"] + cpu["new chats, again"]) / 2
    ratio = cpu["2,000-message chats"] / cpu[f"{SHORT}-message chats"]
    ok = all(row["ok"] == row["replies"] for row in rows.values())
    print(json.dumps({"long_vs_new_cpu_per_reply": round(cpu["2,000-message chats"] / new, 3),
                      f"long_vs_{SHORT}_cpu_per_reply": round(ratio, 3), "target": "long vs short <= 1.10",
                      "verdict": "PASS" if ratio <= 1.10 and ok else "FAIL", "every_stream_whole": ok}))


if __name__ == "__main__":
    main()
