"""Password hashing, token digests and encryption of secrets at rest."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from cryptography.fernet import Fernet, InvalidToken

# argon2id with the library's defaults (RFC 9106's second recommendation: t=3, m=64 MiB, p=4):
# about 140 ms a hash on the build machine, which is the point in production.
PRODUCTION_HASHER = PasswordHasher()
_hasher = PRODUCTION_HASHER


def use_hasher(hasher: PasswordHasher) -> None:
    """Hash new passwords with ``hasher`` from now on; the test suite uses a cheap one (every
    sign-in of a test paid 140 ms twice). Verifying reads the cost from each stored hash, so
    hashes of either kind keep verifying."""
    global _hasher
    _hasher = hasher


TOKEN_PREFIX = "llt_"  # noqa: S105 - a public prefix, not a secret


def hash_password(password: str) -> str:
    return str(_hasher.hash(password))


def verify_password(password_hash: str | None, password: str) -> bool:
    if not password_hash:
        # Spend the same time as a real check so user enumeration by timing does not work.
        _hasher.hash(password)
        return False
    try:
        return bool(_hasher.verify(password_hash, password))
    except (VerificationError, InvalidHashError):
        return False


def new_token() -> str:
    """A bearer token: 256 random bits, so a fast digest is a safe way to store it."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def hmac_sha256(secret: bytes, body: bytes) -> str:
    return hmac.new(secret, body, hashlib.sha256).hexdigest()


class SecretBox:
    """Encrypts secrets with a key derived from LAMPLIGHTER_SECRET_KEY (Fernet: AES-CBC + HMAC)."""

    def __init__(self, master_key: bytes) -> None:
        derived = hashlib.sha256(b"lamplighter-secretbox:" + master_key).digest()
        self._fernet = Fernet(base64.urlsafe_b64encode(derived))

    def encrypt(self, plaintext: str) -> str:
        return self._fernet.encrypt(plaintext.encode()).decode()

    def decrypt(self, ciphertext: str) -> str:
        try:
            return self._fernet.decrypt(ciphertext.encode()).decode()
        except InvalidToken as exc:
            raise ValueError("secret cannot be decrypted with the configured key") from exc
