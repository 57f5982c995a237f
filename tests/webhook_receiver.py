"""A webhook receiver of its own process, as a customer's would be: it verifies every delivery with the
`standardwebhooks` package and appends what it got to a JSON-lines file. It can be told (POST /control) to answer
500 to the next N deliveries or to hang for a while before answering.

    python -m tests.webhook_receiver PORT SECRET LOG_FILE
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from aiohttp import web
from standardwebhooks.webhooks import Webhook, WebhookVerificationError


def make_app(secret: str, log_file: Path) -> web.Application:
    verifier = Webhook(secret)
    state: dict[str, Any] = {"fail": 0, "hang_s": 0.0}

    async def control(request: web.Request) -> web.Response:
        state.update(await request.json())
        return web.json_response(state)

    async def hook(request: web.Request) -> web.Response:
        body = await request.text()
        try:
            event = verifier.verify(body, dict(request.headers))
            verified = True
        except WebhookVerificationError:
            event, verified = json.loads(body), False
        answer = 200
        if state["fail"] > 0:
            state["fail"] -= 1
            answer = 500
        record = {"id": request.headers.get("webhook-id"), "verified": verified, "event": event, "answer": answer,
                  "hung": state["hang_s"] > 0}
        with log_file.open("a") as fh:
            fh.write(json.dumps(record) + "\n")
        if state["hang_s"] > 0:
            await asyncio.sleep(state["hang_s"])
        return web.Response(status=answer if verified else 401)

    app = web.Application()
    app.router.add_post("/control", control)
    app.router.add_post("/hook", hook)
    return app


if __name__ == "__main__":
    port, secret, log_file = int(sys.argv[1]), sys.argv[2], Path(sys.argv[3])
    web.run_app(make_app(secret, log_file), host="127.0.0.1", port=port, print=None)
