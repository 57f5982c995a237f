"""The gima-server command: serve (default), user add / role / sessions, keys list / rotate / retire (signing keys)
and keys create / list --user / revoke (API keys), check-config."""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import os
import secrets
import sys
import time
import warnings
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from aiohttp.web_exceptions import NotAppKeyWarning

from .config import ConfigError, Settings
from .observability.logs import configure_logging
from .store.base import SchemaError, StoreUnavailable
from .webhooks.cli import add_parser as webhooks_parser
from .webhooks.cli import webhooks_command

if TYPE_CHECKING:
    from .store.base import Store, User

ROLES = ("user", "alpha", "admin")
log = logging.getLogger("gima.cli")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gima-server", description="Self-hosted streaming chat server.")
    sub = parser.add_subparsers(dest="command")
    serve = sub.add_parser("serve", help="run the server (the default)")
    for p in (parser, serve):
        p.add_argument("--host", help="listen address (GIMA_HOST, default 127.0.0.1)")
        p.add_argument("--port", type=int, help="listen port (GIMA_PORT, default 8080)")
        p.add_argument("--data-dir", help="SQLite file and local state (GIMA_DATA_DIR, default ./data)")
        p.add_argument("--drain-s", type=float, help="graceful shutdown drain time (GIMA_DRAIN_S, default 120)")
    sub.add_parser("backup", help="copy the SQLite store to a new file while the server runs").add_argument("file")
    restore = sub.add_parser("restore", help="replace the SQLite store with a backup (every server stopped)")
    restore.add_argument("file")
    restore.add_argument("--yes", action="store_true", help="required: the current data is replaced")
    db = sub.add_parser("db", help="the store's schema: numbered steps (serve applies them at start)")
    db_sub = db.add_subparsers(dest="db_command", required=True)
    db_sub.add_parser("status", help="the schema version and the steps this gima-server would apply")
    db_sub.add_parser("upgrade", help="apply the pending steps now (under the database's write lock)")
    store = sub.add_parser("store", help="move the store's data").add_subparsers(dest="store_command", required=True)
    copy = store.add_parser("copy", help="copy users, sessions, keys, chats and messages into another store "
                                         "(stop the servers first)")
    copy.add_argument("source", metavar="SRC_URL", help="sqlite:///PATH or postgresql://…")
    copy.add_argument("destination", metavar="DST_URL", help="sqlite:///PATH or postgresql://… (empty)")
    copy.add_argument("--continue", dest="go_on", action="store_true",
                      help="go on with an interrupted copy into a destination that holds part of it")
    copy.add_argument("--batch-rows", type=int, default=500, choices=range(1, 10_001), metavar="1..10000",
                      help="rows per committed batch (default 500)")
    webhooks_parser(sub)
    check = sub.add_parser("check-config", help="validate the configuration and exit")
    check.add_argument("--probe", action="store_true", help="also try the store, Redis and each upstream once")
    user = sub.add_parser("user", help="manage users").add_subparsers(dest="user_command", required=True)
    add = user.add_parser("add", help="create a user (a password is generated unless --password-stdin)")
    add.add_argument("email")
    add.add_argument("--role", choices=ROLES[1:], action="append", default=[])
    add.add_argument("--name", default="")
    add.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    role = user.add_parser("role", help="grant a role to a user (or --revoke it)")
    role.add_argument("email")
    role.add_argument("role", choices=ROLES[1:])
    role.add_argument("--revoke", action="store_true")
    plan = user.add_parser("plan", help="put a user on a plan of GIMA_PLANS_FILE (\"default\": the file's default)")
    plan.add_argument("email")
    plan.add_argument("plan")
    keys = sub.add_parser("keys", help="the access-token signing keys in the data dir, and users' API keys").add_subparsers(
        dest="keys_command", required=True)
    listing = keys.add_parser("list", help="show the signing key ring (which key signs, which only verify), or with "
                                           "--user EMAIL that user's API keys")
    listing.add_argument("--user", metavar="EMAIL", help="list this user's API keys instead")
    create = keys.add_parser("create", help="make an API key for a user (printed once)")
    create.add_argument("email")
    create.add_argument("name")
    keys.add_parser("revoke", help="delete an API key by its id: it stops working").add_argument("key_id")
    keys.add_parser("rotate", help="add a key; it signs after GIMA_KEY_ACTIVATION_DELAY_S, old tokens keep working")
    keys.add_parser("retire", help="remove an old key: tokens it signed stop working").add_argument("kid")
    delete = user.add_parser("delete", help="delete a user and all their chats, sessions and API keys")
    delete.add_argument("email")
    delete.add_argument("--yes", action="store_true", help="required: the deletion cannot be undone")
    sessions = user.add_parser("sessions", help="list a user's login sessions (or --revoke them all)")
    sessions.add_argument("email")
    sessions.add_argument("--revoke", action="store_true", help="end every open session of the user")
    return parser


def _settings(args: argparse.Namespace) -> Settings:
    return Settings.from_env(
        host=getattr(args, "host", None),
        port=getattr(args, "port", None),
        data_dir=Path(args.data_dir) if getattr(args, "data_dir", None) else None,
        drain_s=getattr(args, "drain_s", None),
    )


_GC_YOUNG_THRESHOLD = 20_000


def _new_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


def _tune_gc() -> None:
    """Collect the young generation less often: every event allocates a few objects, and at the default
    threshold (700) the collector ran every few milliseconds under load (profile: 8 % of a busy server).
    Objects made at start-up are frozen out of every collection."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(_GC_YOUNG_THRESHOLD, 20, 20)


def serve(settings: Settings) -> None:
    from .app import create_app
    from .collector import pace_collector
    from .server import serve_until_signalled

    # aiohttp-session keeps its state under plain string keys; its warning about that is not ours to fix.
    warnings.filterwarnings("ignore", category=NotAppKeyWarning, module="aiohttp_session")
    app = create_app(settings)
    app.cleanup_ctx.append(pace_collector)
    _tune_gc()
    loop = _new_loop()
    try:
        loop.run_until_complete(serve_until_signalled(app, settings))
    finally:
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()


async def _user_command(settings: Settings, args: argparse.Namespace) -> int:
    from .auth.passwords import MIN_PASSWORD_CHARS, hash_password
    from .auth.routes import normalize_email
    from .errors import ApiError
    from .store import open_store
    from .store.base import DuplicateError

    try:
        email = normalize_email(args.email)
    except ApiError as exc:
        print(f"gima-server: {exc.message}", file=sys.stderr)
        return 2
    store = open_store(settings)
    await store.open()
    try:
        if args.user_command == "add":
            generated = not args.password_stdin
            password = secrets.token_urlsafe(12) if generated else sys.stdin.readline().rstrip("\n")
            if len(password) < MIN_PASSWORD_CHARS:
                print(f"gima-server: the password must have at least {MIN_PASSWORD_CHARS} characters", file=sys.stderr)
                return 2
            initial_roles = ("user", *dict.fromkeys(args.role))
            name = args.name or email.split("@")[0]
            try:
                created = await store.create_user(email, await hash_password(password), name, initial_roles)
            except DuplicateError:
                print(f"gima-server: a user with email {email} already exists", file=sys.stderr)
                return 1
            print(f"created user {created.email} ({created.id}) with roles {', '.join(created.roles)}")
            if generated:
                print(f"password: {password}")
            return 0
        user = await _lookup(store, email)
        if user is None:
            return 1
        if args.user_command == "sessions":
            return await _sessions_command(settings, store, user, args.revoke)
        if args.user_command == "delete":
            return await _delete_command(settings, store, user, args.yes)
        if args.user_command == "plan":
            return await _plan_command(settings, store, user, args.plan)
        roles = [r for r in user.roles if r != args.role] if args.revoke else [*user.roles, args.role]
        updated = await store.set_roles(user.id, list(dict.fromkeys(["user", *roles])))
        assert updated is not None
        # Open streams and sockets were authorised under the old roles: they end, and reconnect under the new.
        now = time.time()
        await _announce_ended(settings, [s.id for s in await store.list_sessions(user.id)
                                         if not s.revoked and s.expires_at > now])
        print(f"{updated.email} now has roles {', '.join(updated.roles)}")
        return 0
    finally:
        await store.close()


async def _plan_command(settings: Settings, store: Store, user: User, plan: str) -> int:
    catalog = settings.plans()
    if catalog is None:
        print("gima-server: no plans: set GIMA_PLANS_FILE", file=sys.stderr)
        return 2
    name = None if plan == "default" else plan
    if name is not None and name not in catalog.plans:
        print(f"gima-server: no plan {plan!r} in GIMA_PLANS_FILE (plans: {', '.join(catalog.plans)})", file=sys.stderr)
        return 2
    await store.set_plan(user.id, name, time.time())
    shown = name or f"the default ({catalog.default or 'no plan'})"
    print(f"{user.email} is now on {shown}; it applies within GIMA_SESSION_CACHE_S ({settings.session_cache_s:g} s)")
    return 0


async def _lookup(store: Store, email: str) -> User | None:
    user = await store.get_user_by_email(email)
    if user is None:
        print(f"gima-server: no user with email {email}", file=sys.stderr)
    return user


async def _delete_command(settings: Settings, store: Store, user: User, confirmed: bool) -> int:
    if not confirmed:
        print(f"gima-server: deleting {user.email} cannot be undone; add --yes", file=sys.stderr)
        return 2
    from .auth.connections import account_sessions

    sessions = await account_sessions(store, user.id)
    await store.delete_user(user.id)
    await _announce_ended(settings, sessions)
    print(f"deleted {user.email} with all their chats, sessions and API keys")
    return 0


async def _sessions_command(settings: Settings, store: Store, user: User, revoke: bool) -> int:
    """List the user's sessions; with revoke, end the open ones (and, with Redis, their streams everywhere)."""
    now = time.time()
    listed = await store.list_sessions(user.id)
    open_ids = [s.id for s in listed if not s.revoked and s.expires_at > now]
    if not revoke:
        for s in listed:
            state = "revoked" if s.revoked else "expired" if s.expires_at <= now else "open"
            created = datetime.fromtimestamp(s.created_at, UTC).strftime("%Y-%m-%d %H:%M UTC")
            print(f"{s.id}  {state:<8} created {created}")
        print(f"{len(open_ids)} open of {len(listed)} sessions of {user.email}")
        return 0
    for session_id in open_ids:
        await store.revoke_session(session_id)
    await _announce_ended(settings, open_ids)
    print(f"revoked {len(open_ids)} open {'session' if len(open_ids) == 1 else 'sessions'} of {user.email}")
    return 0


def _keys_command(settings: Settings, args: argparse.Namespace) -> int:
    from .auth.keyring import KeyRingError, load_ring, retire, rotate, signing_key

    if settings.secret_keys:
        print("gima-server: GIMA_SECRET_KEY is set, so the keys are not in the data dir: rotate by putting a new key "
              "first in GIMA_SECRET_KEY (comma-separated, the old one after it) and restarting each process",
              file=sys.stderr)
        return 2
    seed = settings.with_secret().secret_keys[0]
    try:
        if args.keys_command == "rotate":
            added = rotate(settings.data_dir, seed, settings.key_activation_delay_s)
            print(f"added key {added.kid}; it signs from {_utc(added.signs_from)} (every process re-reads the ring "
                  f"every {settings.key_ring_reload_s:g} s); retire the old key once its tokens have expired "
                  f"({settings.access_token_ttl_s} s after that)")
        elif args.keys_command == "retire":
            gone = retire(settings.data_dir, seed, args.kid)
            print(f"retired key {gone.kid}: tokens it signed are refused once each process re-reads the ring")
        else:
            keys = load_ring(settings.data_dir, seed)
            current = signing_key(keys, time.time())
            for k in keys:
                role = "signs" if k.kid == current.kid else "next" if k.signs_from > time.time() else "verifies"
                print(f"{k.kid}  {role:<8} since {_utc(k.signs_from) if k.signs_from else 'the start'}")
    except KeyRingError as exc:
        print(f"gima-server: {exc}", file=sys.stderr)
        return 1
    return 0


async def _api_key_command(settings: Settings, args: argparse.Namespace) -> int:
    """keys create EMAIL NAME / keys list --user EMAIL / keys revoke KEY_ID: what /api/keys does, for an admin."""
    from .apikeys.model import MAX_KEYS_PER_USER, ApiKey, key_hash, key_hint, new_key
    from .auth.routes import normalize_email
    from .errors import ApiError
    from .ids import new_id
    from .store import open_store

    store = open_store(settings)
    await store.open()
    try:
        if args.keys_command == "revoke":
            owner = await _key_owner_id(store, args.key_id)
            if owner is None or not await store.delete_api_key(owner, args.key_id):
                print(f"gima-server: no API key with id {args.key_id}", file=sys.stderr)
                return 1
            await _announce_ended(settings, [f"key:{args.key_id}"])
            print(f"revoked API key {args.key_id}: it stops working within GIMA_SESSION_CACHE_S "
                  f"({settings.session_cache_s:g} s), at once on processes that share Redis")
            return 0
        try:
            email = normalize_email(args.email if args.keys_command == "create" else args.user)
        except ApiError as exc:
            print(f"gima-server: {exc.message}", file=sys.stderr)
            return 2
        user = await _lookup(store, email)
        if user is None:
            return 1
        if args.keys_command == "create":
            secret = new_key()
            key = ApiKey(new_id(), user.id, args.name.strip() or "cli", key_hash(secret), key_hint(secret), time.time())
            if not await store.create_api_key(key, MAX_KEYS_PER_USER):
                print(f"gima-server: {email} already has {MAX_KEYS_PER_USER} API keys", file=sys.stderr)
                return 1
            print(f"created API key {key.id} ({key.name}) for {email}; it is shown only now:")
            print(secret)
            return 0
        keys = await store.list_api_keys(user.id)
        for k in keys:
            used = _utc(k.last_used_at) if k.last_used_at else "never"
            print(f"{k.id}  {k.hint}…  {k.name!r}  created {_utc(k.created_at)}, last used {used}")
        print(f"{len(keys)} API {'key' if len(keys) == 1 else 'keys'} of {email}")
        return 0
    finally:
        await store.close()


async def _key_owner_id(store: Store, key_id: str) -> str | None:
    """Whose key this id is: the CLI revokes by id alone, as an admin does."""
    from .ids import is_valid_id

    if not is_valid_id(key_id):
        return None
    return await store.api_key_owner(key_id)


def _backup_command(settings: Settings, args: argparse.Namespace) -> int:
    from .backup import BackupError, backup, restore

    if settings.store_url.startswith("mongodb"):
        print("gima-server: the store is MongoDB: back it up with mongodump / mongorestore", file=sys.stderr)
        return 2
    if settings.store_url.startswith(("postgresql://", "postgres://")):
        print("gima-server: the store is PostgreSQL: back it up with pg_dump / pg_restore (or its own base backups"
              " and WAL archive)", file=sys.stderr)
        return 2
    try:
        if args.command == "backup":
            size = backup(settings.sqlite_path, Path(args.file))
            print(f"backed up {settings.sqlite_path} to {args.file} ({size} bytes)")
            return 0
        if not args.yes:
            print(f"gima-server: restoring replaces everything in {settings.sqlite_path}; add --yes", file=sys.stderr)
            return 2
        restore(Path(args.file), settings.sqlite_path)
        print(f"restored {settings.sqlite_path} from {args.file}")
        return 0
    except BackupError as exc:
        print(f"gima-server: {exc}", file=sys.stderr)
        return 1


def _utc(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


async def _announce_ended(settings: Settings, session_ids: list[str]) -> None:
    """Tell the running processes (through Redis, when configured) to close these sessions' connections now;
    without Redis, each process stops accepting their tokens within GIMA_SESSION_CACHE_S."""
    if not settings.redis_url or not session_ids:
        return
    from .redis_client import connect
    from .streams.ownership import RedisCancelBus

    redis = connect(settings, settings.redis_timeout_s * 8)
    try:
        bus = RedisCancelBus(redis)
        for session_id in session_ids:
            await bus.announce_session_ended(session_id)
    finally:
        await redis.aclose()


def _warn_unknown_variables() -> None:
    from .config import unknown_variables

    for var, closest in unknown_variables(os.environ):
        hint = f" (did you mean {closest}?)" if closest else ""
        print(f"gima-server: warning: {var} is not a setting and is ignored{hint}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    _warn_unknown_variables()
    try:
        settings = _settings(args)
    except ConfigError as exc:
        print(f"gima-server: configuration error: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level, settings.log_format)
    try:
        return _dispatch(settings, args)
    except StoreUnavailable as exc:
        print(f"gima-server: cannot reach the store ({exc.reason}); is it running, and is GIMA_STORE_URL right?",
              file=sys.stderr)
        return 1
    except SchemaError as exc:
        print(f"gima-server: {exc}", file=sys.stderr)
        return 1


def _dispatch(settings: Settings, args: argparse.Namespace) -> int:
    if args.command in ("backup", "restore"):
        return _backup_command(settings, args)
    if args.command == "db":
        from .store.schema_cli import db_command

        return db_command(settings, args.db_command)
    if args.command == "store":
        from .store.copy import CopyRefused, copy_store

        try:
            return 0 if asyncio.run(copy_store(settings, args.source, args.destination, args.go_on,
                                                   args.batch_rows)) else 1
        except CopyRefused as exc:
            print(f"gima-server: store copy: {exc}", file=sys.stderr)
            return 2
    if args.command == "check-config":
        print("configuration is valid")
        if not args.probe:
            return 0
        from .probe import probe

        results = asyncio.run(probe(settings))
        for what, answered, detail in results:
            print(f"{what}: {'ok' if answered else 'FAILED'} - {detail}")
        return 0 if all(answered for _, answered, _ in results) else 1
    if args.command == "user":
        return asyncio.run(_user_command(settings, args))
    if args.command == "webhooks":
        return asyncio.run(webhooks_command(settings, args))
    if args.command == "keys" and (args.keys_command in ("create", "revoke") or getattr(args, "user", None)):
        return asyncio.run(_api_key_command(settings, args))
    if args.command == "keys":
        return _keys_command(settings, args)
    try:
        serve(settings)
    except ConfigError as exc:
        print(f"gima-server: configuration error: {exc}", file=sys.stderr)
        return 2
    except (OSError, SchemaError) as exc:
        print(f"gima-server: cannot start: {exc}", file=sys.stderr)
        return 1
    return 0
