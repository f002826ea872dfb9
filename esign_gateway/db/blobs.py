"""Which stored blobs the database names (the backup checks that its copy of the store holds them)."""

from __future__ import annotations

from .models import DocumentRow, EnvelopeRow

__all__ = ["referenced_keys"]


async def referenced_keys() -> set[str]:
    """Every document-store key a live envelope names: uploads, prepared copies, current and signed
    versions, audit reports."""
    keys: set[str] = set()
    for row in await DocumentRow.filter(envelope__purged_at__isnull=True).values_list(
        "sha256", "prepared_sha256", "current_sha256", "signed_sha256"
    ):
        keys.update(k for k in row if k)
    keys.update(k for k in await EnvelopeRow.exclude(audit_report_sha256=None).values_list(
        "audit_report_sha256", flat=True) if k)
    return keys
