"""Encryption at rest for secrets the gateway must use again (Fernet, key from configuration)."""

from __future__ import annotations

from datetime import datetime, timedelta

from cryptography.fernet import Fernet, InvalidToken

__all__ = ["SecretBox"]


class SecretBox:
    def __init__(self, key: bytes) -> None:
        self._fernet = Fernet(key)

    def seal(self, plaintext: str, *, at: datetime | None = None) -> str:
        if at is not None:  # a token that expires: stamped with the injected clock, not the wall clock
            return self._fernet.encrypt_at_time(plaintext.encode(), int(at.timestamp())).decode()
        return self._fernet.encrypt(plaintext.encode()).decode()

    def open(self, sealed: str) -> str:
        return self._fernet.decrypt(sealed.encode()).decode()

    def open_fresh(self, sealed: str, *, max_age: timedelta, now: datetime) -> str | None:
        """The plaintext of a token sealed at most ``max_age`` before ``now``; None if forged or too old."""
        try:
            return self._fernet.decrypt_at_time(sealed.encode(), int(max_age.total_seconds()),
                                                int(now.timestamp())).decode()
        except InvalidToken:
            return None

    def authentic(self, sealed: str) -> bool:
        """Sealed by us, however long ago (a forged token is not; an old one of ours is)."""
        try:
            self._fernet.decrypt(sealed.encode())
        except InvalidToken:
            return False
        return True

    @staticmethod
    def generate_key() -> bytes:
        return Fernet.generate_key()
