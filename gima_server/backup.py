"""`gima-server backup FILE` and `restore FILE`: SQLite's online backup API, page by page.

A backup is taken while the server runs (readers and writers go on; the copy is one consistent moment).
A restore replaces the data with a checked backup while no server uses the file (it refuses otherwise).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path


class BackupError(Exception):
    pass


def _check(path: Path) -> None:
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as conn:
            verdict = conn.execute("PRAGMA integrity_check").fetchone()[0]
            conn.execute("SELECT COUNT(*) FROM messages").fetchone()
    except sqlite3.Error as exc:
        raise BackupError(f"{path} is not a gima-server database ({exc})") from None
    if verdict != "ok":
        raise BackupError(f"{path} failed its integrity check: {verdict}")


def backup(database: Path, destination: Path) -> int:
    """Copy the live database to destination (which must not exist); return its size in bytes."""
    if not database.exists():
        raise BackupError(f"there is no database at {database}")
    if destination.exists():
        raise BackupError(f"{destination} exists; choose a new file (a backup never overwrites)")
    destination.parent.mkdir(parents=True, exist_ok=True)
    partial = destination.with_name(destination.name + ".partial")
    source = sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=30)
    target = sqlite3.connect(partial)
    try:
        source.backup(target, pages=1024)  # in steps: the server's writers wait at most one step
    finally:
        target.close()
        source.close()
    _check(partial)
    partial.rename(destination)  # a crash half-way leaves a .partial file, never a broken backup
    return destination.stat().st_size


def restore(backup_file: Path, database: Path) -> None:
    """Replace the database with a checked backup; refused while a server holds the database open."""
    _check(backup_file)
    database.parent.mkdir(parents=True, exist_ok=True)
    target = sqlite3.connect(database, timeout=0)
    try:
        try:  # an exclusive lock fails at once while any server process has the file open in WAL mode
            target.execute("PRAGMA locking_mode = EXCLUSIVE")
            target.execute("BEGIN EXCLUSIVE")
            target.execute("COMMIT")
        except sqlite3.OperationalError:
            raise BackupError(f"{database} is in use: stop every gima-server process that uses it first") from None
        with sqlite3.connect(f"file:{backup_file}?mode=ro", uri=True) as source:
            source.backup(target)
    finally:
        target.close()
