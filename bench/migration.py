"""Chat during a migration import: a chat burst with and without an import running, as a ratio.

  python -m bench.migration [--users 50] [--batches 30]

One gima-server with the migration lane on. First a chat burst alone; then the same burst while an alpha
user's history (batches of 100 conversations) is being imported. Reports time to first event for both,
429s, and how far the import got.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time

import aiohttp

from .load import chat_bursts, gima


def _batch(seq: int) -> dict[str, object]:
    return {"conversations": [
        {"title": f"old {seq}-{i}", "messages": [{"role": "user" if j % 2 == 0 else "assistant",
                                                  "content": f"conversation {seq}-{i}, message {j}"} for j in range(20)]}
        for i in range(100)
    ]}


async def _import(base: str, token: str, batches: int) -> dict[str, object]:
    headers = {"Authorization": f"Bearer {token}"}
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{base}/api/migration/jobs", json={"source": "indexeddb"}, headers=headers) as resp:
            job_id = (await resp.json())["job"]["id"]
        for seq in range(batches):
            url = f"{base}/api/migration/jobs/{job_id}/batches/{seq}"
            async with session.put(url, json=_batch(seq), headers=headers) as resp:
                assert resp.status == 202, await resp.text()
        async with session.post(f"{base}/api/migration/jobs/{job_id}/complete", headers=headers) as resp:
            await resp.read()
        return {"job": job_id}


async def _job(base: str, token: str, job_id: str) -> dict[str, object]:
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{base}/api/migration/jobs/{job_id}", headers={"Authorization": f"Bearer {token}"}) as r:
            return dict((await r.json()).get("job", {}))


async def main_async(users: int, batches: int) -> None:
    env = {"GIMA_MIGRATION_ENABLED": "on", "GIMA_RATE_LIMITS": "migration=100000/min/100000"}
    async with gima(users + 1, 50, 60, alpha=1, **env) as target:
        alpha, chatters = target.tokens[0], target.tokens[1:]
        target.tokens = chatters
        alone = await chat_bursts(target, users, 2)
        started = time.perf_counter()
        job = await _import(target.base, alpha, batches)
        with_import = await chat_bursts(target, users, 2)
        progress = await _job(target.base, alpha, str(job["job"]))
        print(json.dumps({"import": progress, "upload_and_burst_s": round(time.perf_counter() - started, 2)}), flush=True)
    ratio = {q: round(float(with_import["ttfe_ms"][q] or 0) / max(0.001, float(alone["ttfe_ms"][q] or 0)), 2)  # type: ignore[index]
             for q in ("p50", "p90", "p99")}
    print(json.dumps({"summary": "chat during an import vs chat alone", "ttfe_ratio": ratio,
                      "429s": int(alone["http_429"]) + int(with_import["http_429"])}), flush=True)  # type: ignore[call-overload]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=50)
    parser.add_argument("--batches", type=int, default=30)
    args = parser.parse_args()
    asyncio.run(main_async(args.users, args.batches))


if __name__ == "__main__":
    main()
