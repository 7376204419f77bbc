"""Tokens and passwords of the API: made here, stored only as hashes (pure).

- API tokens are 256 random bits; the database keeps their SHA-256 digest, which is enough for
  a secret that long and lets a request be authenticated with one indexed lookup.
- People's passwords are hashed with Argon2id (argon2-cffi's defaults).
- A device's MQTT password is made and hashed by :mod:`broker_config.accounts`, in the
  broker's own password-file format.
"""

from __future__ import annotations

import hashlib
import secrets
from typing import Final

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

TOKEN_PREFIX: Final = "sc_"  # noqa: S105 - a prefix telling our tokens apart, not a secret
_passwords: Final = PasswordHasher()


def new_token() -> str:
    """A fresh API token: shown once to its owner, never stored."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def token_digest(token: str) -> str:
    """What the database keeps of a token."""
    return hashlib.sha256(token.encode()).hexdigest()


def hash_password(password: str) -> str:
    return _passwords.hash(password)


def password_matches(password: str, stored_hash: str) -> bool:
    try:
        return _passwords.verify(stored_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def new_password() -> str:
    """A password for a person, 16 URL-safe characters (about 96 bits): to be changed."""
    return secrets.token_urlsafe(12)
