"""Secrets at rest: passwords and API tokens are kept only as argon2id hashes (argon2-cffi), session ids only as
SHA-256 (256 random bits need no slow hash). Nothing here ever logs a secret."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

_HASHER = PasswordHasher()  # argon2id, the library's RFC 9106 parameters
_TOKEN = re.compile(r"^cb_([a-z0-9]{12})_([A-Za-z0-9_-]{32,64})$")


def hash_secret(secret: str) -> str:
    return _HASHER.hash(secret)


def verify_secret(stored_hash: str, secret: str) -> bool:
    try:
        return _HASHER.verify(stored_hash, secret)
    except (VerificationError, InvalidHashError):
        return False


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def same(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


def new_token() -> tuple[str, str, str]:
    """(token id, secret, the token a user is given: `cb_{id}_{secret}`)."""
    token_id = "".join(secrets.choice("abcdefghijkmnpqrstuvwxyz23456789") for _ in range(12))
    secret = secrets.token_urlsafe(32)
    return token_id, secret, f"cb_{token_id}_{secret}"


def split_token(token: str) -> tuple[str, str] | None:
    """(token id, secret) of a well-formed token, else None."""
    m = _TOKEN.match(token)
    return None if m is None else (m.group(1), m.group(2))
