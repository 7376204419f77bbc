"""Tokens, passwords and device credentials: made here, stored only as hashes (pure).

- API tokens are 256 random bits; the database keeps their SHA-256 digest, which is enough for
  a secret that long and lets a request be authenticated with one indexed lookup.
- People's passwords are hashed with Argon2id (argon2-cffi's defaults).
- A device's MQTT password is hashed in Mosquitto's own password-file format (``$7$``:
  PBKDF2-SHA512, 101 iterations, 12-byte salt), so the broker can be given the file as is.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from typing import Final

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

TOKEN_PREFIX: Final = "sc_"  # noqa: S105 - a prefix telling our tokens apart, not a secret
MOSQUITTO_ITERATIONS: Final = 101
_MOSQUITTO_SALT_BYTES: Final = 12
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


def new_device_password() -> str:
    """A device's MQTT password: 24 random bytes, URL-safe, typed into no keyboard."""
    return secrets.token_urlsafe(24)


def mosquitto_hash(password: str, salt: bytes | None = None) -> str:
    """``password`` as a line of a Mosquitto password file holds it (after ``user:``)."""
    salt = salt if salt is not None else secrets.token_bytes(_MOSQUITTO_SALT_BYTES)
    derived = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, MOSQUITTO_ITERATIONS)
    encoded_salt = base64.b64encode(salt).decode()
    return f"$7${MOSQUITTO_ITERATIONS}${encoded_salt}${base64.b64encode(derived).decode()}"


def mosquitto_hash_matches(password: str, stored_hash: str) -> bool:
    """Whether ``password`` is the one ``stored_hash`` (``$7$...``) was made from."""
    parts = stored_hash.split("$")
    if len(parts) != 5 or parts[1] != "7" or not parts[2].isdigit():
        return False
    salt, expected = base64.b64decode(parts[3]), base64.b64decode(parts[4])
    derived = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, int(parts[2]))
    return hmac.compare_digest(derived, expected)
