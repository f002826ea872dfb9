"""PAdES signing with pyHanko, as a synchronous function for a worker process.

``sign(request)`` adds one signer's signature as an incremental update: PAdES (ETSI.CAdES.detached)
with a trusted timestamp (B-T), a visible stamp on the last page (name, time, envelope ID) and the
signer's name and verification method in the signature dictionary. The last signature of a
document (``request.final``) makes it **B-LTA**: the certificates and CRLs of the signing and TSA
chains go into the DSS and a document timestamp seals everything. ``renew(pdf)`` adds a fresh
document timestamp (with its own validation data) to keep an archived file verifiable.
``self_test()`` signs a probe PDF the same way (B-T) and validates it against the configured trust
roots: the gateway runs it at start (see docs/operations.md, "Configuration checks").

The signature itself is made by :func:`adapters._pdf.signature.add_signature`, the code the upload
inspector's trial signature runs too: fresh object numbers, the original's metadata left alone,
``/NeedAppearances`` kept, foreign document timestamps tolerated, and an integrity check that the
original is untouched before the result is returned (see docs/pdf-intake.md).

Speed (see shared/pyhanko-notes.md): pyHanko's ``SimpleSigner`` re-parses its key from DER on
every signature and sizes the container with a dry-run signature; the dummy TSA parses its key
per token. Here the parsed keys are kept per process, ``bytes_reserved`` is fixed, and the
signer objects are built once by ``init_worker``. Signing never runs on the event loop: the
provider calls this in a process pool.
"""

from __future__ import annotations

import asyncio
import io
import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from asn1crypto import x509 as asn1_x509
from pyhanko.pdf_utils.font.opentype import GlyphAccumulatorFactory
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign import signers
from pyhanko.sign.general import CMSExtractionError, load_cert_from_pemder
from pyhanko.sign.timestamps import HTTPTimeStamper
from pyhanko.sign.validation.errors import SignatureValidationError
from pyhanko_certvalidator import ValidationContext

from adapters._pdf import asn1_fix, fast_hex
from adapters._pdf.keys import CachedKeySigner
from adapters._pdf.signature import FONT_DIR, SignatureSpec, add_signature, stamp_box
from adapters._pdf.stamp_font import StampFontFactory
from adapters._pdf.update import UpdateIntegrityError
from adapters._pdf.validation_fix import install as _install_validation_fix
from adapters._process import name_process
from esign_gateway.errors import ProviderError
from esign_gateway.ports import SignatureRequest

from .tsa import DevTimeStamper

__all__ = [
    "SignatureCheck", "SigningMaterial", "check_material", "init_worker", "load_roots", "long_term_check",
    "newest_timestamp_expiry", "renew", "self_test", "sign", "stamp_box", "validate", "validate_timestamps",
]

FONT_PATH = FONT_DIR / "DejaVuSans-Stamp.ttf"
_install_validation_fix()
fast_hex.install()


@dataclass(frozen=True, slots=True)
class SigningMaterial:
    """Where the signing identity lives (picklable: it is sent to worker processes)."""

    key_pem_path: Path | None = None
    cert_pem_path: Path | None = None
    chain_pem_paths: tuple[Path, ...] = ()
    pkcs12_path: Path | None = None
    pkcs12_password: bytes | None = None
    tsa_url: str | None = None
    dev_tsa_key_path: Path | None = None
    dev_tsa_cert_path: Path | None = None
    trust_root_paths: tuple[Path, ...] = field(default_factory=tuple)
    crl_paths: tuple[Path, ...] = field(default_factory=tuple)
    """CRLs (DER) to embed as revocation info; with ``fetch_revocation`` the rest is fetched (CRL/OCSP URLs)."""
    fetch_revocation: bool = False


_CachedKeySigner = CachedKeySigner


class _RecordsTime:
    """Mixin: remember the TSA times of the tokens since the last reset (each worker process signs
    one at a time), in the order they were asked for: perhaps a first one pyHanko asks for only to
    size the signature, then the signature's own timestamp token, then — on the last signature
    (B-LTA) — the document timestamp."""

    times: list[datetime]

    def reset(self) -> None:
        self.times = []

    @property
    def last_time(self) -> datetime | None:
        return self.times[-1] if getattr(self, "times", None) else None

    async def async_timestamp(self, message_digest: bytes, md_algorithm: str) -> Any:
        token = await super().async_timestamp(message_digest, md_algorithm)  # type: ignore[misc]
        gen_time = token["content"]["encap_content_info"]["content"].parsed["gen_time"].native
        self.times = [*getattr(self, "times", []), gen_time.astimezone(UTC)]
        return token


class _HttpTsa(_RecordsTime, HTTPTimeStamper):
    pass


class _DevTsa(_RecordsTime, DevTimeStamper):
    pass


@dataclass
class _Worker:
    signer: signers.Signer
    timestamper: _HttpTsa | _DevTsa
    font: GlyphAccumulatorFactory
    loop: asyncio.AbstractEventLoop = field(default_factory=asyncio.new_event_loop)
    """pyHanko's API is async; one private loop per worker process saves a loop per signature."""


_state: _Worker | None = None
_material: SigningMaterial | None = None


def _load(material: SigningMaterial) -> _Worker:
    if material.pkcs12_path is not None:
        signer: signers.SimpleSigner | None = _CachedKeySigner.load_pkcs12(
            str(material.pkcs12_path), passphrase=material.pkcs12_password
        )
    else:
        assert material.key_pem_path and material.cert_pem_path
        signer = _CachedKeySigner.load(
            str(material.key_pem_path), str(material.cert_pem_path),
            ca_chain_files=tuple(str(p) for p in material.chain_pem_paths),
        )
    if signer is None:
        raise ProviderError("The signing key could not be loaded.")
    # pyHanko's loaders build a plain SimpleSigner whatever class they are called on: make it ours,
    # so the parsed key is kept (re-parsing it costs ~36 ms per signature).
    signer.__class__ = _CachedKeySigner
    timestamper: _HttpTsa | _DevTsa
    if material.tsa_url:
        timestamper = _HttpTsa(material.tsa_url, timeout=15)
    else:
        assert material.dev_tsa_key_path and material.dev_tsa_cert_path
        timestamper = _DevTsa.from_files(material.dev_tsa_cert_path, material.dev_tsa_key_path)
    return _Worker(signer, timestamper, StampFontFactory(str(FONT_PATH), font_size=8))


def init_worker(material: SigningMaterial) -> None:
    """Process-pool initializer: load the identity once per process."""
    global _state, _material, _context
    name_process("esign-sign")
    asn1_fix.install()
    logging.getLogger("fontTools").setLevel(logging.ERROR)
    logging.getLogger("pyhanko").setLevel(logging.WARNING)
    _material = material
    _context = None
    _state = _load(material)


def _in_running_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def sign(request: SignatureRequest) -> tuple[bytes, datetime | None]:
    """Sign ``request.pdf`` for one signer. Sync: run it in a worker process or thread."""
    if _state is None:
        if _material is None:
            raise ProviderError("The signing worker is not initialised.")
        init_worker(_material)
    assert _state is not None
    try:
        if _in_running_loop():
            return asyncio.run(_sign(_state, request))  # called from a thread beside a loop
        return _state.loop.run_until_complete(_sign(_state, request))
    except ProviderError:
        raise
    except UpdateIntegrityError as exc:
        raise ProviderError(f"Signing would change the original document: {exc}.") from None
    except Exception as exc:
        raise ProviderError(f"Signing failed: {type(exc).__name__}: {_short(exc)}") from None


def _short(exc: BaseException) -> str:
    """The cause of a failure, for the log: pyHanko's messages name structures, never content."""
    return str(exc)[:300]


async def _sign(state: _Worker, request: SignatureRequest) -> tuple[bytes, datetime | None]:
    spec = SignatureSpec(
        field_name=request.field_name, signer_name=request.signer_name,
        reason=f"Signed by {request.signer_name}; verified by {request.verification}",
        envelope_id=request.envelope_id, slot=request.slot, language=request.language, visible=request.visible,
        long_term=_validation_context() if request.final else None, placement=request.placement,
    )
    state.timestamper.reset()
    pdf = await add_signature(request.pdf, spec, signer=state.signer, timestamper=state.timestamper, font=state.font)
    times = state.timestamper.times
    # the signature's own timestamp: the document timestamp (B-LTA) comes after it
    own = times[-2] if spec.long_term is not None and len(times) >= 2 else times[-1] if times else None
    return pdf, own


CONTEXT_TTL_SECONDS = 300.0
_context: tuple[float, ValidationContext] | None = None


def _validation_context() -> ValidationContext:
    """Trust roots and our CRLs, kept for :data:`CONTEXT_TTL_SECONDS` per worker process.

    A context caches the certificate paths and revocation data it has checked, which is most of
    the validation work of a B-LTA signature (~5 ms of ~25). It validates at the moment it was
    made, so it is rebuilt every 5 minutes (and thereby re-reads the CRL files)."""
    global _context
    assert _material is not None
    material = _material
    now = time.monotonic()
    if _context is None or now - _context[0] > CONTEXT_TTL_SECONDS:
        _context = (now, ValidationContext(
            trust_roots=load_roots(material.trust_root_paths) or None,
            crls=[p.read_bytes() for p in material.crl_paths],
            allow_fetching=material.fetch_revocation,
        ))
    return _context[1]


def renew(pdf: bytes) -> tuple[bytes, datetime | None]:
    """Add a document timestamp with the current TSA (and its validation data) to an LTA file."""
    if _state is None:
        if _material is None:
            raise ProviderError("The signing worker is not initialised.")
        init_worker(_material)
    assert _state is not None
    state = _state

    async def run() -> tuple[bytes, datetime | None]:
        from pyhanko.sign.signers import PdfTimeStamper

        out = io.BytesIO()
        state.timestamper.reset()
        await PdfTimeStamper(state.timestamper).async_update_archival_timestamp_chain(
            PdfFileReader(io.BytesIO(pdf), strict=False), _validation_context(), in_place=False, output=out,
        )
        return out.getvalue(), state.timestamper.last_time

    try:
        return asyncio.run(run()) if _in_running_loop() else state.loop.run_until_complete(run())
    except Exception as exc:
        raise ProviderError(f"Timestamp renewal failed: {type(exc).__name__}.") from None


def newest_timestamp_expiry(pdf: bytes) -> datetime | None:
    """When the TSA certificate of the newest document timestamp expires (the renewal deadline)."""
    reader = PdfFileReader(io.BytesIO(pdf), strict=False)
    stamps = [s for s in reader.embedded_signatures if s.sig_object.get("/Type") == "/DocTimeStamp"]
    if not stamps:
        return None
    cert = stamps[-1].signer_cert
    return cert["tbs_certificate"]["validity"]["not_after"].native.astimezone(UTC)


# ------------------------------------------------------------------------------ validation


@dataclass(frozen=True, slots=True)
class SignatureCheck:
    field_name: str
    signer_name: str | None
    intact: bool
    valid: bool
    trusted: bool
    coverage: str
    modification_level: str | None
    bottom_line: bool
    timestamp: datetime | None


_UNREADABLE = (SignatureValidationError, CMSExtractionError, ValueError)
"""What pyHanko raises for a signature container it cannot read (asn1crypto raises ValueError)."""


def _embedded_signatures(reader: PdfFileReader) -> tuple[list[Any], list[tuple[str, Any]]]:
    """``reader.embedded_signatures`` (in signing order), except that a signature whose container
    cannot even be parsed does not fail the whole document: it comes back in the second list, as
    its field name and signature dictionary."""
    from pyhanko.sign.fields import enumerate_sig_fields
    from pyhanko.sign.validation.pdf_embedded import EmbeddedPdfSignature

    readable, unreadable = [], []
    for field_name, sig_object, sig_field in enumerate_sig_fields(reader, filled_status=True):
        try:
            readable.append(EmbeddedPdfSignature(reader, sig_field, field_name))
        except _UNREADABLE:
            unreadable.append((field_name, sig_object.get_object()))
    return sorted(readable, key=lambda sig: sig.signed_revision), unreadable


def validate(pdf: bytes, trust_roots: list[asn1_x509.Certificate]) -> list[SignatureCheck]:
    """Validate every signature with pyHanko (sync; for worker threads, tests and tools).
    Document timestamps are checked by :func:`validate_timestamps` and :func:`long_term_check`."""
    from pyhanko.sign.validation import async_validate_pdf_signature

    def broken(field_name: str, name: object) -> SignatureCheck:
        return SignatureCheck(
            field_name=field_name, signer_name=str(name) if name is not None else None, intact=False,
            valid=False, trusted=False, coverage="", modification_level=None, bottom_line=False, timestamp=None,
        )

    async def run() -> list[SignatureCheck]:
        reader = PdfFileReader(io.BytesIO(pdf), strict=False)
        checks = []
        signatures, unreadable = _embedded_signatures(reader)
        for sig in signatures:
            if sig.sig_object.get("/Type") == "/DocTimeStamp":
                continue
            vc = ValidationContext(trust_roots=trust_roots, allow_fetching=False)
            name = sig.sig_object.get("/Name")
            try:
                status = await async_validate_pdf_signature(sig, vc)
            except _UNREADABLE:  # a damaged signature container
                checks.append(broken(sig.field_name, name))
                continue
            ts = status.timestamp_validity.timestamp if status.timestamp_validity else None
            checks.append(SignatureCheck(
                field_name=sig.field_name, signer_name=str(name) if name is not None else None,
                intact=status.intact, valid=status.valid, trusted=status.trusted,
                coverage=status.coverage.name if status.coverage else "",
                modification_level=status.modification_level.name if status.modification_level else None,
                bottom_line=status.bottom_line, timestamp=ts,
            ))
        checks.extend(broken(field_name, sig_object.get("/Name")) for field_name, sig_object in unreadable
                      if sig_object.get("/Type") != "/DocTimeStamp")
        return checks

    return asyncio.run(run())


def validate_timestamps(pdf: bytes, trust_roots: list[asn1_x509.Certificate]) -> list[bool]:
    """For each document timestamp: intact, valid and trusted."""
    from pyhanko.sign.validation import async_validate_pdf_timestamp

    async def run() -> list[bool]:
        reader = PdfFileReader(io.BytesIO(pdf), strict=False)
        out = []
        for sig in reader.embedded_signatures:
            if sig.sig_object.get("/Type") == "/DocTimeStamp":
                status = await async_validate_pdf_timestamp(
                    sig, validation_context=ValidationContext(trust_roots=trust_roots, allow_fetching=False)
                )
                out.append(bool(status.intact and status.valid and status.trusted))
        return out

    return asyncio.run(run())


def load_roots(paths: tuple[Path, ...]) -> list[asn1_x509.Certificate]:
    return [load_cert_from_pemder(str(p)) for p in paths]



@dataclass(frozen=True, slots=True)
class LongTermCheck:
    field_name: str
    now: str
    """ETSI EN 319 102-1 sub-indication of an LTA validation today (``OK`` passes)."""
    future: str
    """The same, simulated at ``future_time`` assuming the file is kept as it is."""
    bottom_line: bool


def long_term_check(
    pdf: bytes, trust_roots: list[asn1_x509.Certificate], future_time: datetime
) -> list[LongTermCheck]:
    """PAdES-LTA validation of every signature: revocation info required, nothing fetched."""
    from pyhanko.sign.validation.ades import ades_lta_validation, simulate_future_ades_lta_validation
    from pyhanko.sign.validation.policy_decl import (
        PdfSignatureValidationSpec,
        RevinfoOnlineFetchingRule,
        RevocationInfoGatheringSpec,
        SignatureValidationSpec,
    )
    from pyhanko_certvalidator.context import CertValidationPolicySpec
    from pyhanko_certvalidator.policy_decl import REQUIRE_REVINFO, CertRevTrustPolicy
    from pyhanko_certvalidator.registry import SimpleTrustManager

    spec = PdfSignatureValidationSpec(SignatureValidationSpec(
        cert_validation_policy=CertValidationPolicySpec(
            trust_manager=SimpleTrustManager.build(trust_roots=trust_roots),
            revinfo_policy=CertRevTrustPolicy(REQUIRE_REVINFO),
        ),
        revinfo_gathering_policy=RevocationInfoGatheringSpec(
            online_fetching_rule=RevinfoOnlineFetchingRule.LOCAL_ONLY
        ),
    ))

    async def run() -> list[LongTermCheck]:
        reader = PdfFileReader(io.BytesIO(pdf), strict=False)
        out = []
        for sig in reader.embedded_signatures:
            if sig.sig_object.get("/Type") == "/DocTimeStamp":
                continue
            now = await ades_lta_validation(sig, spec)
            later = await simulate_future_ades_lta_validation(sig, spec, future_validation_time=future_time)
            out.append(LongTermCheck(sig.field_name, now.ades_subindic.name, later.ades_subindic.name,
                                     bool(now.api_status.bottom_line and later.api_status.bottom_line)))
        return out

    logging.getLogger("pyhanko").setLevel(logging.CRITICAL)  # failed checks are results here, not errors
    return asyncio.run(run())


# ------------------------------------------------------------------------------ configuration checks


def check_material(material: SigningMaterial) -> list[tuple[str, str]]:
    """Whether the identity files can be read as what they should be, in the gateway process (cheap:
    no signature). One ``(field of SigningMaterial, plain words)`` per problem; the caller names the
    variable. Whether they can *sign* is :func:`self_test`'s question."""
    from cryptography.hazmat.primitives.serialization import load_der_private_key, load_pem_private_key, pkcs12

    problems: list[tuple[str, str]] = []

    def read(path: Path) -> bytes | None:
        try:
            return path.read_bytes()
        except OSError:  # the caller reports unreadable files
            return None

    def certs(field_name: str, paths: tuple[Path, ...]) -> None:
        for path in paths:
            data = read(path)
            if data is None:
                continue
            try:
                load_cert_from_pemder(str(path))
            except Exception:  # asn1crypto/oscrypto raise several kinds for a file that is no certificate
                problems.append((field_name, f"{path} is not a certificate (PEM or DER)"))

    if material.pkcs12_path is not None:
        data = read(material.pkcs12_path)
        try:
            if data is not None:
                pkcs12.load_key_and_certificates(data, material.pkcs12_password)
        except ValueError:
            problems.append(("pkcs12_path", f"{material.pkcs12_path} cannot be opened: not a PKCS#12 file, or the "
                                            "password (ESIGN_SIGNING_PKCS12_PASSWORD) is wrong"))
    elif material.key_pem_path is not None and (data := read(material.key_pem_path)) is not None:
        try:
            (load_pem_private_key if b"-----BEGIN" in data else load_der_private_key)(data, password=None)
        except TypeError:
            problems.append(("key_pem_path", f"{material.key_pem_path} is encrypted: give an unencrypted key or a "
                                             "PKCS#12 file with its password"))
        except ValueError:
            problems.append(("key_pem_path", f"{material.key_pem_path} is not a private key (PEM or DER)"))
    if material.pkcs12_path is None and material.cert_pem_path is not None:
        certs("cert_pem_path", (material.cert_pem_path,))
    certs("chain_pem_paths", material.chain_pem_paths)
    certs("trust_root_paths", material.trust_root_paths)
    from cryptography import x509

    for path in material.crl_paths:
        try:
            if (data := read(path)) is not None:
                x509.load_der_x509_crl(data)
        except ValueError:
            problems.append(("crl_paths", f"{path} is not a CRL (DER)"))
    return problems


# ------------------------------------------------------------------------------ self-test


SELF_TEST_FIELD = "esign-gateway-self-test"


def _probe_pdf() -> bytes:
    """A one-page blank PDF, made here (nothing read from disk)."""
    import pikepdf

    out = io.BytesIO()
    with pikepdf.new() as pdf:
        pdf.add_blank_page(page_size=(595, 842))
        pdf.save(out)
    return out.getvalue()


def _without_password(url: str) -> str:
    """A URL as it may be shown: credentials in it are left out."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = (parts.hostname or "") + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, host, parts.path, parts.query, ""))


def _subject(cert: asn1_x509.Certificate) -> str:
    return str(cert.subject.native.get("common_name") or cert.subject.human_friendly)


def self_test() -> str | None:
    """Sign a probe PDF as a signer's signature is made (B-T, here in the worker) and validate it
    with the configured trust roots. None when it passes; otherwise the cause in plain words,
    naming the variable to look at. Runs in a signing worker process."""
    from cryptography.hazmat.primitives import serialization
    from pyhanko.sign.timestamps import TimestampRequestError
    from pyhanko.sign.validation import async_validate_pdf_signature

    if _state is None:
        if _material is None:
            return "the signing worker is not initialised"
        init_worker(_material)
    assert _state is not None and _material is not None
    state, material = _state, _material
    key_var = "ESIGN_SIGNING_PKCS12_PATH" if material.pkcs12_path else "ESIGN_SIGNING_KEY_PATH"
    cert_var = "ESIGN_SIGNING_PKCS12_PATH" if material.pkcs12_path else "ESIGN_SIGNING_CERT_PATH"
    roots_var = "ESIGN_SIGNING_TRUST_ROOT_PATHS"
    signer = state.signer
    assert isinstance(signer, signers.SimpleSigner) and signer.signing_cert is not None
    cert = signer.signing_cert
    key = serialization.load_der_private_key(signer.signing_key.dump(), password=None)
    spki = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    if spki != cert.public_key.dump():
        return f"the private key ({key_var}) does not match the certificate '{_subject(cert)}' ({cert_var})"

    request = SignatureRequest(
        pdf=_probe_pdf(), envelope_id="self-test", document_id="self-test", signer_id="self-test",
        signer_name="esign-gateway self-test", signer_email="", field_name=SELF_TEST_FIELD, slot=0,
        verification="start-up self-test", language="en", final=False, visible=False,
    )
    tsa = f"ESIGN_TSA_URL={_without_password(material.tsa_url)}" if material.tsa_url else "the built-in development TSA"
    try:
        signed, when = (asyncio.run(_sign(state, request)) if _in_running_loop()
                        else state.loop.run_until_complete(_sign(state, request)))
    except TimestampRequestError as exc:
        return f"the timestamp authority ({tsa}) did not answer: {_short(exc.__cause__ or exc)}"
    except Exception as exc:
        return f"the probe PDF could not be signed: {type(exc).__name__}: {_short(exc)}"
    if when is None:
        return f"the probe signature got no timestamp from {tsa}"

    roots = load_roots(material.trust_root_paths) or None  # None: the system's roots, as the signing path uses
    where = f"a trust root in {roots_var}" if roots else f"a system trust root ({roots_var} is empty)"

    async def check() -> str | None:
        reader = PdfFileReader(io.BytesIO(signed), strict=False)
        [sig] = [s for s in reader.embedded_signatures if s.field_name == SELF_TEST_FIELD]
        status = await async_validate_pdf_signature(
            sig, ValidationContext(trust_roots=roots, allow_fetching=False)
        )
        if not (status.intact and status.valid):
            return f"the probe signature does not verify with the certificate '{_subject(cert)}' ({cert_var})"
        if not status.trusted:
            return (f"the signing certificate '{_subject(cert)}' does not chain to {where} "
                    "(check ESIGN_SIGNING_CHAIN_PATHS and the roots)")
        ts = status.timestamp_validity
        if ts is None:
            return f"the probe signature carries no timestamp from {tsa}"
        if not (ts.intact and ts.valid):
            return f"the timestamp from {tsa} does not verify"
        if not ts.trusted:
            return f"the certificate of the timestamp authority ({tsa}) does not chain to {where}"
        return None

    previous = logging.getLogger("pyhanko").level
    logging.getLogger("pyhanko").setLevel(logging.CRITICAL)  # a failed check is the result here, not an error
    try:
        return asyncio.run(check()) if _in_running_loop() else state.loop.run_until_complete(check())
    except Exception as exc:
        return f"the probe signature could not be validated: {type(exc).__name__}: {_short(exc)}"
    finally:
        logging.getLogger("pyhanko").setLevel(previous)
