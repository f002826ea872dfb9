"""Untrusted uploads are parsed in a bounded worker process."""

from __future__ import annotations

import resource
from typing import Any

import pytest

from esign_gateway.errors import PdfEncryptedError, PdfInvalidError
from tests.factories import make_encrypted_pdf, make_pdf, make_pdf_bomb


async def test_valid_pdf_reports_pages(shared_parts: dict[str, Any]) -> None:
    assert (await shared_parts["inspector"].inspect(make_pdf(pages=7))).pages == 7


async def test_encrypted_pdf_is_refused(shared_parts: dict[str, Any]) -> None:
    with pytest.raises(PdfEncryptedError):
        await shared_parts["inspector"].inspect(make_encrypted_pdf())


@pytest.mark.parametrize("data", [b"", b"hello", b"%PDF-1.7\n", make_pdf()[:300], b"%PDF-1.4\n" + b"\x00" * 5000],
                         ids=["empty", "text", "header-only", "truncated", "zeros"])
async def test_broken_input_is_pdf_invalid(shared_parts: dict[str, Any], data: bytes) -> None:
    with pytest.raises(PdfInvalidError):
        await shared_parts["inspector"].inspect(data)


async def test_pdf_bomb_fails_in_the_worker_and_the_inspector_keeps_working(shared_parts: dict[str, Any]) -> None:
    inspector = shared_parts["inspector"]
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(PdfInvalidError):
        await inspector.inspect(make_pdf_bomb())
    grown_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    assert grown_kib < 200 * 1024  # the gateway's own memory did not absorb the bomb
    assert (await inspector.inspect(make_pdf(pages=2))).pages == 2
