"""Request examples for the document: real requests the gateway accepts as they stand.

``CREATE_ENVELOPE`` is what a CRM sends to ``POST /v1/envelopes``: one document (a one-page PDF
with a line of text, built with pikepdf: Helvetica, no compression, no object streams) and one
signer. Schemathesis sends it in its examples phase, so the operations that follow from an envelope
(its documents, audit, reminders, cancel …) are also tested on a real one.
"""

from __future__ import annotations

from typing import Any

__all__ = ["CREATE_ENVELOPE", "EXAMPLE_PDF_BASE64"]

EXAMPLE_PDF_BASE64 = (
    "JVBERi0xLjMKJb/3ov4KMSAwIG9iago8PCAvUGFnZXMgMiAwIFIgL1R5cGUgL0NhdGFsb2cgPj4KZW5kb2JqCjIgMCBvYmoKPDwg"
    "L0NvdW50IDEgL0tpZHMgWyAzIDAgUiBdIC9UeXBlIC9QYWdlcyA+PgplbmRvYmoKMyAwIG9iago8PCAvQ29udGVudHMgNCAwIFIg"
    "L01lZGlhQm94IFsgMCAwIDU5NSA4NDIgXSAvUGFyZW50IDIgMCBSIC9SZXNvdXJjZXMgPDwgL0ZvbnQgPDwgL0YxIDUgMCBSID4+"
    "ID4+IC9UeXBlIC9QYWdlID4+CmVuZG9iago0IDAgb2JqCjw8IC9MZW5ndGggNDggPj4Kc3RyZWFtCkJUIC9GMSAxOCBUZiA3MiA3"
    "NjAgVGQgKENvbnRyYWN0IDIwMjYvMDQyKSBUaiBFVAplbmRzdHJlYW0KZW5kb2JqCjUgMCBvYmoKPDwgL0Jhc2VGb250IC9IZWx2"
    "ZXRpY2EgL1N1YnR5cGUgL1R5cGUxIC9UeXBlIC9Gb250ID4+CmVuZG9iagp4cmVmCjAgNgowMDAwMDAwMDAwIDY1NTM1IGYgCjAw"
    "MDAwMDAwMTUgMDAwMDAgbiAKMDAwMDAwMDA2NCAwMDAwMCBuIAowMDAwMDAwMTIzIDAwMDAwIG4gCjAwMDAwMDAyNTEgMDAwMDAg"
    "biAKMDAwMDAwMDM0OSAwMDAwMCBuIAp0cmFpbGVyIDw8IC9Sb290IDEgMCBSIC9TaXplIDYgL0lEIFs8ZThmZDJjZWUwNDhiMzg0"
    "ODQ5YmRmY2ExZTAxM2FkZTE+PGU4ZmQyY2VlMDQ4YjM4NDg0OWJkZmNhMWUwMTNhZGUxPl0gPj4Kc3RhcnR4cmVmCjQxOQolJUVP"
    "Rgo="
)

CREATE_ENVELOPE: dict[str, Any] = {
    "record": {"type": "deal", "id": "D-2026-0042", "name": "Server delivery"},
    "name": "Contract 2026/042",
    "message": "Please sign the contract.",
    "language": "en",
    "documents": [{"name": "contract.pdf", "content": EXAMPLE_PDF_BASE64}],
    "signers": [{"name": "Jana Nováková", "email": "jana@example.cz", "phone": "+420601123456", "order": 1}],
    "expires_in_days": 14,
    "metadata": {"crm_user": "42"},
}
