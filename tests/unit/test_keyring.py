"""The data dir's signing-key ring: a rotated key signs only after its delay; the signing key cannot be retired."""

from __future__ import annotations

from pathlib import Path

import pytest

from gima_server.auth.keyring import KeyRingError, kid_for, load_ring, retire, rotate, signing_key

SEED = "s" * 48


def test_before_any_rotation_the_data_dirs_secret_signs(tmp_path: Path) -> None:
    keys = load_ring(tmp_path, SEED)
    assert [k.kid for k in keys] == [kid_for(SEED)] and signing_key(keys, 0).secret == SEED


def test_a_rotated_key_signs_after_its_delay_and_the_old_one_still_verifies(tmp_path: Path) -> None:
    added = rotate(tmp_path, SEED, activation_delay_s=60, now=1000)
    keys = load_ring(tmp_path, SEED)
    assert [k.kid for k in keys] == [kid_for(SEED), added.kid]
    assert signing_key(keys, 1059).secret == SEED and signing_key(keys, 1060).kid == added.kid
    assert (tmp_path / "signing_keys.json").stat().st_mode & 0o077 == 0  # secrets: owner only


def test_retiring_refuses_the_signing_key_a_pending_key_and_unknown_kids(tmp_path: Path) -> None:
    added = rotate(tmp_path, SEED, activation_delay_s=60, now=1000)
    with pytest.raises(KeyRingError, match="has not started signing"):
        retire(tmp_path, SEED, added.kid, now=1010)
    with pytest.raises(KeyRingError, match="signs now"):
        retire(tmp_path, SEED, kid_for(SEED), now=1010)
    with pytest.raises(KeyRingError, match="no key"):
        retire(tmp_path, SEED, "nope", now=1010)
    assert len(load_ring(tmp_path, SEED)) == 2  # nothing changed
    retire(tmp_path, SEED, kid_for(SEED), now=2000)  # after the switch, the old key can go
    assert [k.kid for k in load_ring(tmp_path, SEED)] == [added.kid]
