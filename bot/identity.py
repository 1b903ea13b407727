"""Privacy primitives: pseudonymous keys and encryption of what must be kept to reply."""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Sequence

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


def derive_token(secret: bytes, purpose: str) -> str:
    """A URL-safe token for one purpose (e.g. Telegram's webhook secret), derived, not stored."""
    # base64url without padding: only A-Z, a-z, 0-9, "_" and "-", as Telegram's secret_token wants.
    return base64.urlsafe_b64encode(_derive(secret, purpose.encode())).decode("ascii").rstrip("=")


class Identity:
    """Turns channel identifiers into pseudonyms and keeps the chat id encrypted at rest."""

    def __init__(
        self,
        secret: bytes,
        extra_encryption_keys: tuple[bytes, ...] = (),
        *,
        encryption_keys: Sequence[bytes | str] = (),
    ) -> None:
        self._pseudonym_key = _derive(secret, b"pseudonym")
        derived = Fernet(base64.urlsafe_b64encode(_derive(secret, b"encryption")))
        # Newest first: MultiFernet encrypts with the first key and decrypts with any, so adding
        # a key in front (KINDRED_ENCRYPTION_KEYS) starts a rotation; the key derived from the
        # deployment secret stays as the fallback that reads everything written before.
        configured = [Fernet(key) for key in encryption_keys]
        self._primary = configured[0] if configured else derived
        self._fernet = MultiFernet(
            [*configured, derived, *(Fernet(k) for k in extra_encryption_keys)]
        )

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

    def is_current(self, token: str) -> bool:
        """Whether the value is already encrypted with the newest key (nothing to rotate)."""
        try:
            self._primary.decrypt(token.encode("ascii"))
        except (InvalidToken, ValueError):
            return False
        return True

    def rotate(self, token: str) -> str:
        """The same value re-encrypted with the newest key, or UndecryptableValue."""
        try:
            return self._fernet.rotate(token.encode("ascii")).decode("ascii")
        except (InvalidToken, ValueError) as exc:
            raise UndecryptableValue("stored value cannot be decrypted") from exc
