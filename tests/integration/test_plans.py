"""Plans (GIMA_PLANS_FILE): a daily token budget counted from what replies cost (shared through Redis), per-plan
route quotas, `gima-server user plan`, and `/api/auth/me` saying what is left."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from gima_server import appkeys

from ..conftest import Api, MakeClient, quick_user

PLANS = """
default = "free"

[plans.free]
tokens_per_day = 300

[plans.tight]
chat = "1/min/1"

[plans.pro]
tokens_per_day = 1000000

[stripe.prices]
price_pro = "pro"
"""


def _plans_file(tmp_path: Path, text: str = PLANS) -> str:
    path = tmp_path / "plans.toml"
    path.write_text(text)
    return str(path)


async def _me(api: Api) -> dict[str, Any]:
    resp = await api.client.get("/api/auth/me", headers=api.headers)
    assert resp.status == 200
    body: dict[str, Any] = await resp.json()
    return body


async def test_a_user_runs_out_of_tokens_for_the_day_and_has_them_again_after_midnight(
    tmp_path: Path, make_client: MakeClient,
) -> None:
    client = await make_client(plans_file=_plans_file(tmp_path))
    alice = await quick_user(client, "alice@example.com")
    plan = (await _me(alice))["plan"]
    assert plan["name"] == "free" and plan["tokensPerDay"] == 300 and plan["tokensLeftToday"] == 300
    lefts = []
    for n in range(10):
        resp = await client.post("/api/chat/stream", json={"content": f"hello {n}"}, headers=alice.headers)
        if resp.status != 200:
            break
        assert "event: done" in await resp.text()
        lefts.append((await _me(alice))["plan"]["tokensLeftToday"])
    # Each reply counted what it cost (the demo's words and the prompt, estimated), until none was left.
    assert len(lefts) >= 2 and lefts == sorted(lefts, reverse=True) and lefts[-1] == 0 and lefts[-2] > 0
    error = (await resp.json())["error"]
    assert resp.status == 429 and error["code"] == "rate_limited"
    assert "free plan's 300 tokens for today are spent" in error["message"]
    retry_after = int(resp.headers["Retry-After"])
    midnight = (int(time.time()) // 86_400 + 1) * 86_400
    assert abs(time.time() + retry_after - midnight) <= 2  # until 00:00 UTC
    chats = await (await client.get("/api/chats", headers=alice.headers)).json()
    assert len(chats["chats"]) == len(lefts)  # the refused message started nothing
    me = (await _me(alice))["plan"]
    assert me["tokensLeftToday"] == 0 and me["tokensUsedToday"] >= 300 and me["resetsAt"] == midnight

    budget = client.app[appkeys.BUDGET]
    budget.clock = lambda: time.time() + 86_400  # the next UTC day
    events, _ = await alice.stream("a new day")
    assert events[-1].name == "done"


async def test_each_plan_has_its_own_quotas_and_the_cli_moves_a_user_between_plans(
    tmp_path: Path, make_client: MakeClient,
) -> None:
    plans = _plans_file(tmp_path)
    client = await make_client(plans_file=plans, rate_limits="chat=30/min/10", session_cache_s=0)
    bob = await quick_user(client, "bob@example.com")
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIMA_")}
    env.update(GIMA_DATA_DIR=str(tmp_path), GIMA_PLANS_FILE=plans)

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "gima_server", "user", "plan", *args], env=env,
                              capture_output=True, text=True, timeout=60)

    moved = cli("bob@example.com", "tight")
    assert moved.returncode == 0 and "bob@example.com is now on tight" in moved.stdout
    unknown = cli("bob@example.com", "platinum")
    assert unknown.returncode == 2 and "no plan 'platinum'" in unknown.stderr
    assert (await _me(bob))["plan"] == {"name": "tight", "tokensPerDay": None}
    first = await client.post("/api/chat/stream", json={"content": "one"}, headers=bob.headers)
    assert first.status == 200
    await first.read()
    second = await client.post("/api/chat/stream", json={"content": "two"}, headers=bob.headers)
    assert second.status == 429 and "(chat)" in (await second.json())["error"]["message"]
    carol = await quick_user(client, "carol@example.com")  # the default plan: the server's chat quota
    for n in range(3):
        resp = await client.post("/api/chat/stream", json={"content": f"c{n}"}, headers=carol.headers)
        assert resp.status == 200
        await resp.read()
    assert (await _me(carol))["plan"]["name"] == "free"


async def test_the_count_is_shared_by_processes_on_one_redis(
    tmp_path: Path, make_client: MakeClient, redis_url: str,
) -> None:
    plans = _plans_file(tmp_path)
    first = await make_client(plans_file=plans, redis_url=redis_url)
    second = await make_client(plans_file=plans, redis_url=redis_url)  # the same data dir: one SQLite file
    alice = await quick_user(first, "alice@example.com")
    on_second = Api(second, alice.token, alice.user)
    for n in range(8):  # distinct messages: a repeated one would join the reply already given (coalescing)
        resp = await first.post("/api/chat/stream", json={"content": f"hello {n}"}, headers=alice.headers)
        if resp.status == 429:
            break
        await resp.read()
    assert resp.status == 429 and "free plan's" in (await resp.json())["error"]["message"]
    resp = await second.post("/api/chat/stream", json={"content": "hello again"}, headers=on_second.headers)
    assert resp.status == 429 and "free plan's" in (await resp.json())["error"]["message"]  # counted in Redis
    assert (await _me(on_second))["plan"]["tokensLeftToday"] == 0


def test_check_config_names_every_problem_of_the_plans_file(tmp_path: Path) -> None:
    bad = _plans_file(tmp_path, """
default = "gold"
[plans.free]
tokens_per_day = -5
chat = "lots"
colour = "blue"
[stripe.prices]
price_x = "silver"
""")
    env = {"PATH": str(Path(sys.executable).parent), "HOME": str(tmp_path), "GIMA_PLANS_FILE": bad,
           "GIMA_DATA_DIR": str(tmp_path / "data")}
    done = subprocess.run([sys.executable, "-m", "gima_server", "check-config"], env=env, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 2
    for problem in ("plans.free: tokens_per_day must be a whole number", "plans.free: chat must be a quota",
                    "plans.free: unknown setting 'colour'", "default names no plan of this file: 'gold'",
                    "stripe.prices.price_x: names no plan of this file: 'silver'"):
        assert problem in done.stderr, done.stderr
