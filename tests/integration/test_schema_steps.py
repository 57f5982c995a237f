"""Numbered schema steps: a database made before them (kept as a fixture, written by the store of 2026-12-04) is
upgraded in place with everything in it working; a database newer than the code is refused in one line and left
untouched; `gima-server db status` / `db upgrade` say and do the same."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import pytest

from gima_server.apikeys.model import key_hash
from gima_server.auth.passwords import verify_password
from gima_server.store import sqlite_schema
from gima_server.store.base import SchemaError
from gima_server.store.sqlite import SqliteStore

from .test_cli import _cli

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "schema-2026-12-04.sqlite3"
FIXTURE_KEY = "gima_sk_fixturefixturefixturefixturefixture0123"


def _copy(tmp_path: Path) -> Path:
    path = tmp_path / "gima.sqlite3"
    shutil.copy(FIXTURE, path)
    return path


def _version(path: Path) -> int:
    with sqlite3.connect(path) as conn:
        return sqlite_schema.version(conn)


async def test_a_database_of_before_numbered_steps_is_upgraded_in_place_and_keeps_working(tmp_path: Path) -> None:
    path = _copy(tmp_path)
    assert _version(path) == 0
    store = SqliteStore(path)
    await store.open()
    try:
        assert _version(path) == sqlite_schema.LATEST
        user = await store.get_user_by_email("old@example.com")
        assert user is not None and user.roles == ("user", "alpha")
        assert await verify_password(user.password_hash, "an old password")  # the password keeps working
        [chat] = await store.list_chats(user.id, None, 10)
        messages = await store.list_messages(user.id, chat.id)
        assert [(m.role, m.status) for m in messages] == [("user", "complete"), ("assistant", "complete")]
        assert "Fresnel" in messages[1].content
        hits = await store.search_messages(user.id, ["fresnel"], 10, 0)
        assert [h.message_id for h in hits] == [messages[1].id]
        assert await store.api_key_by_hash(key_hash(FIXTURE_KEY)) is not None
        assert await store.list_sessions(user.id)
    finally:
        await store.close()
    again = SqliteStore(path)  # a second start applies nothing
    await again.open()
    await again.close()
    assert _version(path) == sqlite_schema.LATEST


async def test_a_database_newer_than_the_code_is_refused_and_left_untouched(tmp_path: Path) -> None:
    path = _copy(tmp_path)
    with sqlite3.connect(path) as conn:
        conn.execute(f"PRAGMA user_version = {sqlite_schema.LATEST + 1}")
    before = path.read_bytes()
    store = SqliteStore(path)
    with pytest.raises(SchemaError) as info:
        await store.open()
    await store.close()
    assert f"schema version {sqlite_schema.LATEST + 1}, newer than this gima-server's {sqlite_schema.LATEST}" in str(info.value)
    assert path.read_bytes() == before


def test_db_status_and_upgrade_commands(tmp_path: Path) -> None:
    _copy(tmp_path)
    status = _cli(tmp_path, "db", "status")
    assert status.returncode == 0, status.stderr
    assert f"schema version 0 of {sqlite_schema.LATEST}, {sqlite_schema.LATEST} steps to apply" in status.stdout
    assert "step 2: the full-text search index" in status.stdout
    upgraded = _cli(tmp_path, "db", "upgrade")
    assert upgraded.returncode == 0, upgraded.stderr
    assert upgraded.stdout.count("applied step") == sqlite_schema.LATEST
    assert "up to date" in _cli(tmp_path, "db", "status").stdout
    assert "applied step" not in _cli(tmp_path, "db", "upgrade").stdout  # nothing left to do


def test_serve_refuses_a_newer_database_in_one_line(tmp_path: Path) -> None:
    path = _copy(tmp_path)
    with sqlite3.connect(path) as conn:
        conn.execute(f"PRAGMA user_version = {sqlite_schema.LATEST + 3}")
    for args in (("serve", "--port", "0"), ("db", "upgrade"), ("db", "status")):
        result = _cli(tmp_path, *args)
        assert result.returncode == 1, (args, result.stdout, result.stderr)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and "newer than this gima-server's" in lines[0], (args, result.stderr)
    assert _version(path) == sqlite_schema.LATEST + 3


async def test_db_commands_on_postgresql_upgrade_an_older_database_and_refuse_a_newer_one(
    tmp_path: Path, postgres_url: str
) -> None:
    import asyncpg

    from gima_server.store import postgres_schema

    conn = await asyncpg.connect(postgres_url)
    try:
        await postgres_schema.upgrade(conn, "test", to=1)  # what an older build made
        status = _cli(tmp_path, "db", "status", GIMA_STORE_URL=postgres_url)
        assert status.returncode == 0, status.stderr
        pending = postgres_schema.LATEST - 1
        assert f"schema version 1 of {postgres_schema.LATEST}, {pending} steps to apply" in status.stdout
        assert "step 2: the full-text search index" in status.stdout
        assert "gima@" not in status.stdout  # the address is named without its credentials
        upgraded = _cli(tmp_path, "db", "upgrade", GIMA_STORE_URL=postgres_url)
        assert upgraded.returncode == 0, upgraded.stderr
        assert "applied step 2" in upgraded.stdout and await postgres_schema.version(conn) == postgres_schema.LATEST
        assert "applied step" not in _cli(tmp_path, "db", "upgrade", GIMA_STORE_URL=postgres_url).stdout
        await conn.execute("UPDATE gima_schema SET version = $1", postgres_schema.LATEST + 2)
        for args in (("serve", "--port", "0"), ("db", "upgrade"), ("db", "status")):
            result = _cli(tmp_path, *args, GIMA_STORE_URL=postgres_url)
            assert result.returncode == 1, (args, result.stdout, result.stderr)
            lines = result.stderr.strip().splitlines()
            assert len(lines) == 1 and "newer than this gima-server's" in lines[0], (args, result.stderr)
        assert await postgres_schema.version(conn) == postgres_schema.LATEST + 2
    finally:
        await conn.close()


def test_db_status_of_an_unreachable_postgresql_is_one_line(tmp_path: Path) -> None:
    from ..redis_server import free_port

    result = _cli(tmp_path, "db", "status", GIMA_STORE_URL=f"postgresql://gima:s3cret@127.0.0.1:{free_port()}/gima")
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "cannot reach" in lines[0] and "s3cret" not in result.stderr, result.stderr
