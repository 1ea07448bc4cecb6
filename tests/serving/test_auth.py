"""Bearer keys: hashed, compared in constant time, required only when configured."""

from __future__ import annotations

import pytest

from serving.auth import AuthError, check_bearer, hash_key, key_hash_from_env

KEY = "s3cret-key-for-tests-0123456789"


def test_only_the_exact_bearer_key_passes():
    expected = hash_key(KEY)
    assert check_bearer(f"Bearer {KEY}", expected)
    assert check_bearer(f"bearer {KEY}", expected)  # the scheme is case-insensitive
    for header in (None, "", KEY, f"Basic {KEY}", f"Bearer {KEY}x", f"Bearer {KEY[:-1]}",
                   "Bearer ", "Bearer"):
        assert not check_bearer(header, expected), header


def test_key_comes_from_the_named_variable_as_a_hash(monkeypatch):
    monkeypatch.setenv("SFTUNE_TEST_KEY", KEY)
    digest = key_hash_from_env("SFTUNE_TEST_KEY")
    assert digest == hash_key(KEY) and KEY not in digest
    assert key_hash_from_env(None) is None


def test_missing_or_weak_key_refuses_to_start(monkeypatch):
    monkeypatch.delenv("SFTUNE_TEST_KEY", raising=False)
    with pytest.raises(AuthError, match="SFTUNE_TEST_KEY.*unset"):
        key_hash_from_env("SFTUNE_TEST_KEY")
    monkeypatch.setenv("SFTUNE_TEST_KEY", "short")
    with pytest.raises(AuthError, match="at least 16"):
        key_hash_from_env("SFTUNE_TEST_KEY")
