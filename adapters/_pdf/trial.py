"""A trial signature at upload: the inspector signs each file the way the signers will.

"Accepted means signable" cannot be checked by reading a file: what fails is pyHanko's incremental
writer meeting the file's form tree, its earlier signatures and their DocMDP rules, its DSS, its
document timestamps, its page tree. So the inspector runs :func:`.signature.add_signature` itself
— the final B-LTA signature: the signature revision every signer adds, then the DSS and the
document timestamp revisions — with a throwaway identity made in memory per inspector process
(its own root, seal and TSA certificates; nothing of it is ever kept), checks the result with
:func:`.update.check_update`, and validates the trial signature with pyHanko's validator (and, on
a certified file, that the author's certification still holds). Later signers sign on top of our
own clean revisions, which this already exercises.
"""

from __future__ import annotations

import asyncio
import io
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from asn1crypto import keys as asn1_keys
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from pyhanko.pdf_utils.generic import IndirectObject
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign.fields import enumerate_sig_fields
from pyhanko.sign.validation import async_validate_pdf_signature
from pyhanko.sign.validation.pdf_embedded import EmbeddedPdfSignature
from pyhanko_certvalidator import ValidationContext
from pyhanko_certvalidator.registry import SimpleCertificateStore

from esign_gateway.ports import StampPlacement

from . import fast_hex
from .certs import as_leaf, as_root
from .keys import CachedKeySigner, CachedKeyTimeStamper
from .signature import FONT_DIR, SignatureSpec, add_signature
from .stamp_font import StampFontFactory
from .validation_fix import install as _install_validation_fix

__all__ = ["CertificationForbids", "TrialFailed", "TrialIdentity", "trial_sign"]

TRIAL_BYTES_RESERVED = 16 * 1024
"""Enough for the trial's short chain (pyHanko parses the reserved hex in Python: smaller is faster)."""

_install_validation_fix()
fast_hex.install()


class TrialFailed(Exception):
    """The trial signature could not be made, or does not validate (the message says why)."""


class CertificationForbids(TrialFailed):
    """The author's certification (DocMDP) does not allow a new signature field."""


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _asn1_cert(cert: x509.Certificate) -> asn1_x509.Certificate:
    return asn1_x509.Certificate.load(cert.public_bytes(serialization.Encoding.DER))


def _asn1_key(key: rsa.RSAPrivateKey) -> asn1_keys.PrivateKeyInfo:
    return asn1_keys.PrivateKeyInfo.load(key.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))


@dataclass
class TrialIdentity:
    signer: CachedKeySigner
    timestamper: CachedKeyTimeStamper
    root: asn1_x509.Certificate
    font: StampFontFactory = field(
        default_factory=lambda: StampFontFactory(str(FONT_DIR / "DejaVuSans-Stamp.ttf"), font_size=8))
    loop: asyncio.AbstractEventLoop = field(default_factory=asyncio.new_event_loop)

    @classmethod
    def create(cls) -> TrialIdentity:
        now = datetime.now(UTC) - timedelta(minutes=5)
        ca_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        ca = as_root(
            x509.CertificateBuilder().subject_name(_name("esign-gateway upload trial root"))
            .issuer_name(_name("esign-gateway upload trial root")).public_key(ca_key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now).not_valid_after(now + timedelta(days=2))
        ).sign(ca_key, hashes.SHA256())

        def issue(cn: str, *, tsa: bool) -> tuple[rsa.RSAPrivateKey, x509.Certificate]:
            key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            builder = as_leaf(
                x509.CertificateBuilder().subject_name(_name(cn)).issuer_name(ca.subject)
                .public_key(key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(now).not_valid_after(now + timedelta(days=1)),
                tsa=tsa,
            )
            return key, builder.sign(ca_key, hashes.SHA256())

        seal_key, seal = issue("esign-gateway upload trial seal", tsa=False)
        tsa_key, tsa = issue("esign-gateway upload trial TSA", tsa=True)
        root = _asn1_cert(ca)
        signer = CachedKeySigner(
            signing_cert=_asn1_cert(seal), signing_key=_asn1_key(seal_key),
            cert_registry=SimpleCertificateStore.from_certs([root]),
        )
        timestamper = CachedKeyTimeStamper(tsa_cert=_asn1_cert(tsa), tsa_key=_asn1_key(tsa_key))
        return cls(signer=signer, timestamper=timestamper, root=root)

    _context: ValidationContext | None = None

    def context(self) -> ValidationContext:
        """One context per process (a context caches the paths it has validated: most of the work
        of a B-LTA signature's validation data). The trial certificates outlive no process."""
        if self._context is None:
            self._context = ValidationContext(trust_roots=[self.root], allow_fetching=False)
        return self._context


def _spec(slot: int, long_term: ValidationContext | None, placement: StampPlacement | None = None) -> SignatureSpec:
    return SignatureSpec(
        field_name=f"Signature-upload-trial-{slot}", signer_name="Upload Trial Signer",
        reason="Upload check", envelope_id="00000000-0000-7000-8000-000000000000", slot=slot,
        language="cs", visible=True, long_term=long_term, placement=placement,
    )


async def _certification_kept(identity: TrialIdentity, reader: PdfFileReader) -> bool | None:
    """None without a certification; else whether it still allows what the file now holds."""
    certification = _certification(reader)
    if certification is None:
        return None
    status = await async_validate_pdf_signature(certification, identity.context())
    return not (status.docmdp_ok is False or (status.modification_level and status.modification_level.name == "OTHER"))


async def _trial(identity: TrialIdentity, data: bytes, placements: tuple[StampPlacement, ...]) -> None:
    kept_before = await _certification_kept(identity, PdfFileReader(io.BytesIO(data), strict=False))
    # Always the B-LTA signature: validating a signature that later DSS and document-timestamp
    # revisions follow is where pyHanko meets object streams, hybrid xrefs and broken streams of
    # the original (a B-T-only trial let 13 corpus files through that the validator then refused).
    first = placements[0] if placements else None
    await _trial_one(identity, data, first, identity.context(), kept_before)
    # A signer who signs the PDF's own empty field where the first makes a new one (or the other way
    # round) meets other code in pyHanko, and another DocMDP rule: that one is tried too (B-T).
    other = next((p for p in placements[1:] if (p.field_name is None) != (first is None or first.field_name is None)),
                 None)
    if other is not None:
        await _trial_one(identity, data, other, None, kept_before)


async def _trial_one(identity: TrialIdentity, data: bytes, placement: StampPlacement | None,
                     long_term: ValidationContext | None, kept_before: bool | None) -> None:
    final = await add_signature(data, _spec(0, long_term, placement), signer=identity.signer,
                                timestamper=identity.timestamper, font=identity.font,
                                bytes_reserved=TRIAL_BYTES_RESERVED)
    reader = PdfFileReader(io.BytesIO(final), strict=False)
    own_field = placement.field_name if placement is not None else None

    def is_ours(name: str) -> bool:
        return name == own_field if own_field else name.startswith("Signature-upload-trial-")

    ours = [  # only ours: an earlier signature may be too damaged to even parse, and stays as it is
        EmbeddedPdfSignature(reader, sig_field, name)
        for name, _value, sig_field in enumerate_sig_fields(reader, filled_status=True)
        if is_ours(name)
    ]
    if len(ours) != 1:
        raise TrialFailed("the trial signature is not where it was put")
    # P=2 allows filling fields and signing *existing* fields: a new visible signature field breaks the
    # author's certification (pyHanko and Acrobat agree). Only a certification that held before is
    # checked; approval signatures allow further signatures by definition.
    if kept_before and not await _certification_kept(identity, reader):
        raise CertificationForbids("the author's certification does not allow a new signature field")
    for sig in ours:
        status = await async_validate_pdf_signature(sig, identity.context())
        if not (status.intact and status.valid):
            raise TrialFailed("a trial signature does not validate")
        if status.modification_level is not None and status.modification_level.name == "OTHER":
            raise TrialFailed("pyHanko's validator sees the trial signature as modified after signing")


def _certification(reader: PdfFileReader) -> EmbeddedPdfSignature | None:
    try:
        perms = reader.root["/Perms"]
        docmdp = perms.raw_get("/DocMDP")
    except KeyError:
        return None
    for name, _value, sig_field in enumerate_sig_fields(reader, filled_status=True):
        value = sig_field.get_object().raw_get("/V")
        if isinstance(value, IndirectObject) and value.reference == getattr(docmdp, "reference", None):
            try:
                return EmbeddedPdfSignature(reader, sig_field, name)
            except Exception:  # a certification too damaged to read: nothing to keep valid
                return None
    return None


def trial_sign(identity: TrialIdentity, data: bytes, placements: tuple[StampPlacement, ...] = ()) -> None:
    """Raise :class:`TrialFailed` (or what pyHanko raises) unless ``data`` takes our signatures where
    the signers' go (``placements``, one per signer)."""
    identity.loop.run_until_complete(_trial(identity, data, placements))
