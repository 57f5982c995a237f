"""The ring of access-token signing keys kept in the data dir, shared by every process that uses that dir.

`gima-server keys rotate` adds a key that starts signing only after an activation delay, by which time every
process has re-read the ring (they do every GIMA_KEY_RING_RELOAD_S) and accepts it; until then the previous
key signs. Tokens signed by an older key keep verifying until `gima-server keys retire KID` removes it,
which an operator does once those tokens have expired (GIMA_ACCESS_TOKEN_TTL_S after the switch).
The cookie key is not part of the ring: it stays derived from `secret_key`, so no rotation logs anyone out.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import time
from dataclasses import asdict, dataclass
from pathlib import Path

RING_FILE = "signing_keys.json"


class KeyRingError(ValueError):
    """A rotation or retirement that would break sign-in; the message says why."""


@dataclass(frozen=True, slots=True)
class RingKey:
    kid: str
    secret: str
    created_at: float
    signs_from: float


def kid_for(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()[:12]


def load_ring(data_dir: Path, seed_secret: str) -> list[RingKey]:
    """The ring, oldest first; before any rotation, the data dir's one secret, signing since always."""
    path = data_dir / RING_FILE
    if not path.exists():
        return [RingKey(kid_for(seed_secret), seed_secret, 0.0, 0.0)]
    raw = json.loads(path.read_text())
    keys = [RingKey(str(k["kid"]), str(k["secret"]), float(k["created_at"]), float(k["signs_from"])) for k in raw["keys"]]
    if not keys:
        raise KeyRingError(f"{path} holds no keys")
    return keys


def _save(data_dir: Path, keys: list[RingKey]) -> None:
    path = data_dir / RING_FILE
    partial = path.with_suffix(".tmp")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump({"keys": [asdict(k) for k in keys]}, fh, indent=1)
    os.replace(partial, path)  # readers see the old ring or the new one, never half of it


def signing_key(keys: list[RingKey], now: float) -> RingKey:
    """The newest key whose activation time has come."""
    active = [k for k in keys if k.signs_from <= now]
    return max(active, key=lambda k: (k.signs_from, k.created_at)) if active else min(keys, key=lambda k: k.signs_from)


def rotate(data_dir: Path, seed_secret: str, activation_delay_s: float, now: float | None = None) -> RingKey:
    now = time.time() if now is None else now
    keys = load_ring(data_dir, seed_secret)
    secret = secrets.token_urlsafe(48)
    added = RingKey(kid_for(secret), secret, now, now + activation_delay_s)
    _save(data_dir, [*keys, added])
    return added


def retire(data_dir: Path, seed_secret: str, kid: str, now: float | None = None) -> RingKey:
    now = time.time() if now is None else now
    keys = load_ring(data_dir, seed_secret)
    found = next((k for k in keys if k.kid == kid), None)
    if found is None:
        raise KeyRingError(f"no key {kid!r} in the ring (gima-server keys list)")
    current = signing_key(keys, now)
    if found.kid == current.kid:
        raise KeyRingError(f"{kid} is the key that signs now; rotate first, then retire it once its tokens expire")
    if found.signs_from > now:
        raise KeyRingError(f"{kid} has not started signing yet; retiring it would undo the rotation")
    _save(data_dir, [k for k in keys if k.kid != kid])
    return found
