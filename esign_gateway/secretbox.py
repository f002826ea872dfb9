"""Encryption at rest for secrets the gateway must use again (Fernet, key from configuration)."""

from __future__ import annotations

from cryptography.fernet import Fernet

__all__ = ["SecretBox"]


class SecretBox:
    def __init__(self, key: bytes) -> None:
        self._fernet = Fernet(key)

    def seal(self, plaintext: str) -> str:
        return self._fernet.encrypt(plaintext.encode()).decode()

    def open(self, sealed: str) -> str:
        return self._fernet.decrypt(sealed.encode()).decode()

    @staticmethod
    def generate_key() -> bytes:
        return Fernet.generate_key()
