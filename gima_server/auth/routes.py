"""POST /api/auth/signup, /login, /logout and GET /api/auth/me."""

from __future__ import annotations

import hashlib
from typing import Sequence

from aiohttp import web
from email_validator import EmailNotValidError, validate_email

from .. import appkeys
from ..clients import client_address
from ..errors import ApiError, invalid, not_found
from ..ids import new_id
from ..store.base import DuplicateError, User
from ..validation import Field, read_json
from .connections import account_sessions, end_sessions
from .passwords import MAX_PASSWORD_CHARS, MIN_PASSWORD_CHARS, hash_password, verify_password
from .sessions import authenticate, csrf_token, end_cookie_session, require_user, start_cookie_session

MAX_EMAIL_CHARS = 254
_NO_STORE = {"Cache-Control": "no-store"}  # a response carrying a token or CSRF secret is never cached
GUEST_DOMAIN = "guests.invalid"  # reserved: no sign-up can take a guest's address
GUEST_PASSWORD_HASH = "!guest"  # not an argon2 hash: no password ever matches
MAX_NAME_CHARS = 100

SIGNUP_BODY = {
    "email": Field(str, required=True, max_chars=MAX_EMAIL_CHARS),
    "password": Field(str, required=True, max_chars=MAX_PASSWORD_CHARS),
    "name": Field(str, max_chars=MAX_NAME_CHARS),
}
LOGIN_BODY = {
    "email": Field(str, required=True, max_chars=MAX_EMAIL_CHARS),
    "password": Field(str, required=True, max_chars=MAX_PASSWORD_CHARS),
}


def normalize_email(raw: str) -> str:
    """Validated and lower-cased, so one mailbox is one account whatever case it is typed in."""
    try:
        return validate_email(raw.strip(), check_deliverability=False).normalized.lower()
    except EmailNotValidError as exc:
        raise invalid(f"email is not valid: {exc}") from None


async def _login_response(request: web.Request, user: User, status: int, session_ttl_s: int | None = None) -> web.Response:
    store = request.app[appkeys.STORE]
    settings = request.app[appkeys.SETTINGS]
    session = await store.create_session(user.id, session_ttl_s or settings.session_ttl_s)
    csrf = await start_cookie_session(request, session.id)
    tokens = request.app[appkeys.TOKENS]
    body = {"user": user.public(), "accessToken": tokens.issue(user.id, session.id), "expiresIn": tokens.ttl_s, "csrfToken": csrf}
    return web.json_response(body, status=status, headers=_NO_STORE)


async def signup(request: web.Request) -> web.Response:
    body = await read_json(request, SIGNUP_BODY)
    email = normalize_email(body["email"])
    password: str = body["password"]
    if len(password) < MIN_PASSWORD_CHARS:
        raise invalid(f"password must have at least {MIN_PASSWORD_CHARS} characters")
    name = (body["name"] or "").strip() or email.split("@", 1)[0]
    store = request.app[appkeys.STORE]
    try:
        user = await store.create_user(email, await hash_password(password), name, ("user",))
    except DuplicateError:
        raise ApiError(409, "conflict", "an account with this email already exists") from None
    return await _login_response(request, user, 201)


async def login(request: web.Request) -> web.Response:
    body = await read_json(request, LOGIN_BODY)
    email = normalize_email(body["email"])
    # Guessing one account's password: limited per account *and* address, so an attacker elsewhere cannot lock
    # its owner out; a looser ceiling per account bounds guessing spread over many addresses.
    account = "acct:" + hashlib.sha256(email.encode()).hexdigest()[:32]
    limiter = request.app[appkeys.LIMITER]
    await limiter.hit("auth_account", f"{account}:ip:{client_address(request)}")
    await limiter.hit("auth_account_total", account)
    user = await request.app[appkeys.STORE].get_user_by_email(email)
    if not await verify_password(user.password_hash if user else None, body["password"]) or user is None:
        raise ApiError(401, "unauthorized", "email or password is wrong")
    return await _login_response(request, user, 200)


async def guest(request: web.Request) -> web.Response:
    """A guest: an account of its own (role guest, lower quotas) whose data expires after GIMA_GUEST_TTL_S."""
    settings = request.app[appkeys.SETTINGS]
    if not settings.guest_access:
        raise not_found("resource")  # off: the route does not exist
    user = await request.app[appkeys.STORE].create_user(
        f"guest-{new_id()}@{GUEST_DOMAIN}", GUEST_PASSWORD_HASH, "Guest", ("guest",))
    return await _login_response(request, user, 201, settings.guest_ttl_s)


async def logout(request: web.Request) -> web.Response:
    principal = await require_user(request)
    await request.app[appkeys.STORE].revoke_session(principal.session_id)
    await end_sessions(request.app, [principal.session_id])  # its streams and WebSockets end too
    await end_cookie_session(request)
    return web.Response(status=204)


DELETE_ACCOUNT_BODY = {"password": Field(str, max_chars=MAX_PASSWORD_CHARS)}


async def delete_account(request: web.Request) -> web.Response:
    """DELETE /api/auth/me: the account and everything of it; a password account confirms with its password."""
    principal = await require_user(request)
    if principal.via == "api_key":
        raise ApiError(403, "forbidden", "an API key cannot delete its account; sign in")
    body = await read_json(request, DELETE_ACCOUNT_BODY) if request.can_read_body else {"password": None}
    user = principal.user
    if user.password_hash.startswith("$argon2"):
        if body["password"] is None:
            raise invalid("field 'password' is required to delete an account that has one")
        if not await verify_password(user.password_hash, body["password"]):
            raise ApiError(401, "unauthorized", "the password is wrong")
    await end_account(request.app, user.id, extra_sessions=[principal.session_id])
    await end_cookie_session(request)
    return web.Response(status=204)


async def end_account(app: web.Application, user_id: str, extra_sessions: Sequence[str] = ()) -> bool:
    """Stop the user's replies, delete the account with all its data, and end every open connection of it
    (every process, through Redis). False when there was no such user."""
    store = app[appkeys.STORE]
    sessions = await account_sessions(store, user_id)
    app[appkeys.REGISTRY].cancel_user(user_id)
    deleted = await store.delete_user(user_id)
    await end_sessions(app, [*sessions, *extra_sessions])
    return deleted


async def me(request: web.Request) -> web.Response:
    """Who is signed in: nobody is an answer (200 `{user: null}`), so a page asking on its first visit logs no
    error; credentials that do not verify are still 401."""
    principal = await authenticate(request)
    if principal is None:
        return web.json_response({"user": None}, headers=_NO_STORE)
    settings = request.app[appkeys.SETTINGS]
    body: dict[str, object] = {
        "user": principal.user.public(),
        "canMigrate": settings.migration_enabled and "alpha" in principal.user.roles,
    }
    plans = request.app[appkeys.PLANS]
    if plans is not None:  # the plan and what is left of today's tokens
        body["plan"] = await request.app[appkeys.BUDGET].status(principal.user.id, plans.of(principal.user.plan))
    if principal.via == "cookie":
        body["csrfToken"] = await csrf_token(request)
    return web.json_response(body, headers=_NO_STORE)


def add_routes(app: web.Application) -> None:
    app.router.add_post("/api/auth/signup", signup)
    app.router.add_post("/api/auth/login", login)
    app.router.add_post("/api/auth/guest", guest)
    app.router.add_post("/api/auth/logout", logout)
    app.router.add_get("/api/auth/me", me)
    app.router.add_delete("/api/auth/me", delete_account)
