"""`gima-server webhooks add/list/remove/deliveries`: an operator's endpoints (users never register one)."""

from __future__ import annotations

import argparse
import sys
import time

from ..config import Settings
from .endpoints import add_endpoint
from .model import EVENT_TYPES, WebhookError


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    hooks = sub.add_parser("webhooks", help="outgoing webhooks: endpoints and their deliveries").add_subparsers(
        dest="webhooks_command", required=True)
    add = hooks.add_parser("add", help="add an endpoint; its signing secret is printed once")
    add.add_argument("url")
    add.add_argument("--events", help=f"comma-separated, of {', '.join(EVENT_TYPES)} (default: all)")
    add.add_argument("--include-content", action="store_true", help="send the reply's text with reply.* events")
    hooks.add_parser("list", help="the endpoints (never their secrets)")
    hooks.add_parser("remove", help="remove an endpoint and its queued deliveries").add_argument("endpoint_id")
    deliveries = hooks.add_parser("deliveries", help="an endpoint's latest deliveries, newest first")
    deliveries.add_argument("endpoint_id")
    deliveries.add_argument("--limit", type=int, default=20)


def _utc(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(ts))


async def webhooks_command(settings: Settings, args: argparse.Namespace) -> int:
    from ..store import open_store

    store = open_store(settings)
    await store.open()
    try:
        if args.webhooks_command == "add":
            try:
                endpoint = await add_endpoint(store, args.url, args.events, args.include_content)
            except WebhookError as exc:
                print(f"gima-server: {exc}", file=sys.stderr)
                return 2
            print(f"added webhook endpoint {endpoint.id} for {', '.join(endpoint.events)}; its signing secret is "
                  "shown only now:")
            print(endpoint.secret)
            return 0
        if args.webhooks_command == "list":
            endpoints = await store.list_webhook_endpoints()
            for e in endpoints:
                text = ", with reply text" if e.include_content else ""
                print(f"{e.id}  {e.url}  {','.join(e.events)}{text}  added {_utc(e.created_at)}")
            print(f"{len(endpoints)} webhook {'endpoint' if len(endpoints) == 1 else 'endpoints'}")
            return 0
        if args.webhooks_command == "remove":
            if not await store.remove_webhook_endpoint(args.endpoint_id):
                print(f"gima-server: no webhook endpoint {args.endpoint_id}", file=sys.stderr)
                return 1
            print(f"removed webhook endpoint {args.endpoint_id} and its queued deliveries")
            return 0
        if not 1 <= args.limit <= 1000:
            print("gima-server: --limit must be from 1 to 1000", file=sys.stderr)
            return 2
        known = {e.id for e in await store.list_webhook_endpoints()}
        if args.endpoint_id not in known:
            print(f"gima-server: no webhook endpoint {args.endpoint_id}", file=sys.stderr)
            return 1
        for d in await store.list_webhook_deliveries(args.endpoint_id, args.limit):
            last = f", last {d.last_status or d.last_error}" if d.attempts else ""
            print(f"{d.id}  {d.type}  {d.status}  tries {d.attempts}{last}  queued {_utc(d.created_at)}")
        return 0
    finally:
        await store.close()
