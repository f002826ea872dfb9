"""The signer page's Content-Security-Policy, compared directive by directive with the policy
written here (not with the code's own constant): a weaker policy fails this test."""

from __future__ import annotations

from typing import Any

from tests.api.conftest import Ceremony, Tenant, envelope_body

EXPECTED = {
    "default-src": {"'none'"},
    "script-src": {"'self'"},
    "style-src": {"'self'"},
    "img-src": {"'self'", "data:"},
    "form-action": {"'self'"},
    "frame-ancestors": {"'none'"},
    "base-uri": {"'none'"},
    "object-src": {"'none'"},  # no PDF plugin or frame: the pages are images
    "frame-src": {"'none'"},
}


def _directives(header: str) -> dict[str, set[str]]:
    """``a x y; b z`` → ``{"a": {"x", "y"}, "b": {"z"}}`` (CSP 3 §2.2.1: names are case-insensitive;
    a repeated directive is ignored after its first occurrence)."""
    out: dict[str, set[str]] = {}
    for part in header.split(";"):
        tokens = part.split()
        if tokens and tokens[0].lower() not in out:
            out[tokens[0].lower()] = set(tokens[1:])
    return out


def test_the_parser_reads_directives_as_the_spec_says() -> None:
    assert _directives("Default-Src 'none'; img-src 'self' data:;; default-src *") == {
        "default-src": {"'none'"}, "img-src": {"'self'", "data:"}}


async def test_the_signer_page_sends_exactly_the_strict_policy(api: Any, tenant: Tenant, ceremony: Ceremony) -> None:
    await api.post("/v1/envelopes", json=envelope_body(), headers=tenant.auth)
    await ceremony.run_jobs()
    token = ceremony.link_token("jana@example.cz")
    for path in (f"/sign/{token}", f"/api/sign/{token}", "/sign/unknown-link", "/download/forged"):
        resp = await api.get(path)
        headers = resp.headers.getall("Content-Security-Policy")
        assert len(headers) == 1, path  # a second header would be combined with the first
        assert _directives(headers[0]) == EXPECTED, path
