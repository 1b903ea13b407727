"""Privacy primitives: pseudonymous keys and encryption of what must be kept to reply."""

from __future__ import annotations

import base64
import hashlib
import hmac

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF


class IdentityError(Exception):
    """Root of identity errors."""


class UndecryptableValue(IdentityError):
    """A stored value could not be decrypted with any known key."""


def _derive(secret: bytes, purpose: bytes) -> bytes:
    """A 32-byte key for one purpose, so one secret never serves two jobs."""
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=b"kindred-v1", info=purpose).derive(
        secret
    )


class Identity:
    """Turns channel identifiers into pseudonyms and keeps the chat id encrypted at rest."""

    def __init__(self, secret: bytes, extra_encryption_keys: tuple[bytes, ...] = ()) -> None:
        self._pseudonym_key = _derive(secret, b"pseudonym")
        primary = Fernet(base64.urlsafe_b64encode(_derive(secret, b"encryption")))
        # MultiFernet decrypts with any listed key and encrypts with the first: key rotation.
        self._fernet = MultiFernet([primary, *(Fernet(k) for k in extra_encryption_keys)])

    def pseudonym(self, channel: str, external_id: int | str) -> str:
        """HMAC-SHA256 of the channel's user id: stable per person, not reversible."""
        message = f"{channel}:{external_id}".encode()
        return hmac.new(self._pseudonym_key, message, hashlib.sha256).hexdigest()

    def encrypt(self, value: str) -> str:
        """Authenticated encryption (Fernet: AES-128-CBC + HMAC) of a short value."""
        return self._fernet.encrypt(value.encode()).decode("ascii")

    def decrypt(self, token: str) -> str:
        """The plain value back, or UndecryptableValue."""
        try:
            return self._fernet.decrypt(token.encode("ascii")).decode()
        except (InvalidToken, ValueError) as exc:
            raise UndecryptableValue("stored value cannot be decrypted") from exc
