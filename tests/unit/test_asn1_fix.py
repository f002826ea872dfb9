"""The asn1crypto ``dump`` fix: the same bytes, linear work, only on the version it was written for."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import asn1crypto
import pytest
from asn1crypto import cms, core
from pyhanko.sign.general import as_signing_certificate, as_signing_certificate_v2, simple_cms_attribute

from adapters._pdf import asn1_fix
from adapters.providers.local.dev_pki import DevPki, ensure_dev_pki


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> DevPki:
    return ensure_dev_pki(Path(tmp_path_factory.mktemp("pki")))


@pytest.fixture
def counted(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[Callable[..., bytes]], tuple[bytes, int]]]:
    """Dump with a given ``Asn1Value.dump`` and count how many values get re-encoded."""
    calls = 0
    set_contents = core.Sequence._set_contents

    def counting(self: core.Sequence, force: bool = False) -> None:
        nonlocal calls
        calls += 1
        set_contents(self, force)

    monkeypatch.setattr(core.Sequence, "_set_contents", counting)

    def run(dump: Callable[..., bytes], build: Callable[[], core.Asn1Value] | None = None) -> tuple[bytes, int]:
        nonlocal calls
        monkeypatch.setattr(core.Asn1Value, "dump", dump)
        value = build() if build else None
        calls = 0
        assert value is not None
        return value.dump(), calls

    yield run  # type: ignore[misc]


def _signed_attributes(pki: DevPki) -> cms.CMSAttributes:
    """A CMS signed-attribute set as pyHanko builds it for a signature (built, never parsed)."""
    from pyhanko.sign.general import load_cert_from_pemder

    cert = load_cert_from_pemder(str(pki.signer_cert_path))
    tsa = load_cert_from_pemder(str(pki.tsa_cert_path))
    return cms.CMSAttributes([
        simple_cms_attribute("content_type", "data"),
        simple_cms_attribute("message_digest", b"\x01" * 32),
        simple_cms_attribute("signing_certificate_v2", as_signing_certificate_v2(cert)),
        simple_cms_attribute("signing_certificate", as_signing_certificate(tsa)),
    ])


def test_fixed_dump_gives_the_same_bytes_with_a_fraction_of_the_work(pki: DevPki, counted: Callable) -> None:  # type: ignore[type-arg]
    original, original_calls = counted(asn1_fix._original, lambda: _signed_attributes(pki))
    fixed, fixed_calls = counted(asn1_fix._dump, lambda: _signed_attributes(pki))
    assert fixed == original
    by_type = {a["type"].native: a.native for a in _signed_attributes(pki)}
    assert {a["type"].native: a.native for a in cms.CMSAttributes.load(fixed)} == by_type
    # 2^depth re-encodings before, one per value now
    assert fixed_calls * 8 <= original_calls, (fixed_calls, original_calls)


def test_fixed_dump_keeps_explicit_tags_and_reencodes_after_a_change(pki: DevPki, counted: Callable) -> None:  # type: ignore[type-arg]
    def build() -> core.Asn1Value:
        attrs = _signed_attributes(pki)
        attrs.dump()
        attrs[1]["values"][0] = cms.OctetString(b"\x02" * 32)  # changed after a first encoding
        return attrs

    original, _ = counted(asn1_fix._original, build)
    fixed, _ = counted(asn1_fix._dump, build)
    assert fixed == original and b"\x02" * 32 in fixed
    tagged, _ = counted(asn1_fix._dump, lambda: cms.ContentInfo({"content_type": "data", "content": b"abc"}))
    again, _ = counted(asn1_fix._original, lambda: cms.ContentInfo({"content_type": "data", "content": b"abc"}))
    assert tagged == again
    assert cms.ContentInfo.load(tagged)["content"].native == b"abc"  # the [0] EXPLICIT wrapper is there


def test_install_is_idempotent_and_leaves_other_asn1crypto_versions_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(core.Asn1Value, "dump", asn1_fix._original)
    monkeypatch.setattr(asn1crypto, "__version__", "1.6.0")
    assert asn1_fix.install() is False and core.Asn1Value.dump is asn1_fix._original
    monkeypatch.setattr(asn1crypto, "__version__", "1.5.1")
    assert asn1_fix.install() is True and asn1_fix.install() is True
    assert core.Asn1Value.dump is asn1_fix._dump
