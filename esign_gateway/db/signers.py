"""Signer link tokens: looked up by SHA-256, kept Fernet-sealed for re-sending the same link."""

from __future__ import annotations

from tortoise.backends.base.client import BaseDBAsyncClient

from .models import SignerRow

__all__ = ["SignerSecrets"]


class SignerSecrets:
    def __init__(self, conn: BaseDBAsyncClient) -> None:
        self.conn = conn

    async def set_token(self, signer_id: str, token_hash: str, sealed: str) -> None:
        await SignerRow.filter(id=signer_id).using_db(self.conn).update(token_hash=token_hash, token_sealed=sealed)

    async def sealed_token(self, signer_id: str) -> str | None:
        row = await SignerRow.filter(id=signer_id).using_db(self.conn).only("id", "token_sealed").first()
        return row.token_sealed if row else None

    async def find(self, token_hash: str) -> tuple[str, str] | None:
        """(envelope id, signer id) for a token hash."""
        row = await SignerRow.filter(token_hash=token_hash).using_db(self.conn).only("id", "envelope_id").first()
        return (row.envelope_id, row.id) if row else None  # type: ignore[attr-defined]

    async def forget_sealed(self, envelope_id: str) -> None:
        """The envelope ended: nothing will be re-sent, so drop the reusable copies of the links."""
        await SignerRow.filter(envelope_id=envelope_id).using_db(self.conn).update(token_sealed=None)
