"""Bearer-key auth for the endpoint, compared in constant time.

The key itself never travels into Serve's config: the app builder reads it from the environment
variable named by ``serve.api_key_env`` and hands replicas only its sha256. A leaked Serve config
or YAML therefore never leaks the key, and hashing both sides gives equal-length inputs to
:func:`hmac.compare_digest`, so the comparison time says nothing about the key.
"""

from __future__ import annotations

import hashlib
import hmac
import os

__all__ = ["AuthError", "OPEN_PATHS", "check_bearer", "hash_key", "key_hash_from_env"]

#: Paths that never need a key: load balancers and `sftune serve` poll health without one.
OPEN_PATHS = frozenset({"/healthz"})
MIN_KEY_CHARS = 16


class AuthError(ValueError):
    """The API key is missing from the environment or too weak to use."""


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def key_hash_from_env(env_var: str | None) -> str | None:
    """The sha256 of the key in ``env_var`` (None when no variable is configured)."""
    if not env_var:
        return None
    key = os.environ.get(env_var, "")
    if not key:
        # Refusing beats serving without auth when the user asked for auth.
        raise AuthError(f"serve.api_key_env names {env_var!r}, but that variable is unset or empty")
    if len(key) < MIN_KEY_CHARS:
        raise AuthError(
            f"the key in {env_var} has {len(key)} characters; use at least {MIN_KEY_CHARS}, "
            "e.g. from `python -c 'import secrets; print(secrets.token_urlsafe())'`"
        )
    return hash_key(key)


def check_bearer(authorization: str | None, expected_sha256: str) -> bool:
    """Whether an ``Authorization`` header carries the key whose sha256 is ``expected_sha256``."""
    scheme, _, presented = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not presented.strip():
        return False
    return hmac.compare_digest(hash_key(presented.strip()), expected_sha256)
