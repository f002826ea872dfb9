"""Small PDF reproducers for the real-world upload classes of ``shared/pdf-corpus`` (see its README).

Every function builds its file in code (pikepdf on top of :func:`tests.factories.make_pdf`, pyHanko
with a throwaway *foreign* PKI, or hand-written PDF bytes with a correct xref table) and returns
``bytes``. Nothing is copied from the corpus; each docstring names the corpus files it stands for.
Signed reproducers are cached per process (``functools.cache``), and so is the foreign PKI: use
:func:`foreign_pki` in the same process to validate their signatures.
"""

# Each reproducer made the gateway fail before its class was handled (502 after the SMS code,
# overwritten objects, lost form values, valid files refused); tests/integration/test_pdf_intake.py
# and test_pdf_inspector.py hold what must be true of each now.

from __future__ import annotations

import asyncio
import functools
import io
import re
import zlib
from collections.abc import Callable, Coroutine, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

import pikepdf
from asn1crypto import keys as asn1_keys
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
from pyhanko.sign import fields, signers
from pyhanko.sign.timestamps import DummyTimeStamper
from pyhanko_certvalidator import ValidationContext
from pyhanko_certvalidator.registry import SimpleCertificateStore

from tests.factories import make_pdf

__all__ = [
    "ForeignPki",
    "annotations_null",
    "broken_earlier_signature",
    "certified_form_filling",
    "certified_no_changes",
    "circular_form_tree",
    "contents_indirect_array",
    "direct_annotations",
    "direct_page_kids",
    "document_timestamped",
    "fields_with_non_dict_entries",
    "foreign_pki",
    "form_field_bomb",
    "leading_junk",
    "need_appearances",
    "signed_by_foreign_ca",
    "slow_to_decode",
    "too_small_size",
    "xmp_bomb",
]

T = TypeVar("T")

# ------------------------------------------------------------------------------ building blocks

_HEADER = b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n"
_FONT = b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>"
_RESOURCES = b"<< /Font << /F1 %d 0 R >> >>"
# "Smlouva o dílo" in WinAnsiEncoding (í = \355, — = \227): a Czech contract, Helvetica, no embedded font.
_TEXT = b"BT /F1 14 Tf 72 770 Td (Smlouva o d\\355lo \\227 strana %d) Tj 0 -20 Td /F1 10 Tf (%s) Tj ET"


def _stream(data: bytes, entries: bytes = b"") -> bytes:
    """The body of a stream object: ``<< /Length n entries >> stream ... endstream``."""
    return b"<< /Length %d %s>>\nstream\n" % (len(data), entries + b" " if entries else b"") + data + b"\nendstream"


def _text(page: int = 1, line: bytes = b"Smluvni strany se dohodly na plneni dle prilohy.") -> bytes:
    return _TEXT % (page, line)


def _assemble(objects: Mapping[int, bytes], *, root: int = 1, size: int | None = None,
              trailer_extra: bytes = b"") -> bytes:
    """A classic-xref PDF of ``objects`` (number -> body), one xref subsection ``0 max+1``.

    ``size`` overrides the trailer ``/Size`` (the default is the correct ``max + 1``). Object
    numbers without a body get a free entry."""
    out = bytearray(_HEADER)
    offsets: dict[int, int] = {}
    for num in sorted(objects):
        offsets[num] = len(out)
        out += b"%d 0 obj\n" % num + objects[num] + b"\nendobj\n"
    top = max(objects)
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (top + 1)
    for num in range(1, top + 1):
        out += b"%010d 00000 n \n" % offsets[num] if num in offsets else b"0000000000 00001 f \n"
    out += b"trailer\n<< /Size %d /Root %d 0 R %s>>\nstartxref\n%d\n%%%%EOF\n" % (
        top + 1 if size is None else size, root, trailer_extra + b" " if trailer_extra else b"", xref)
    return bytes(out)


def _one_page(
    *, catalog_extra: bytes = b"", page_extra: bytes = b"", extra: Mapping[int, bytes] | None = None
) -> bytes:
    """A one-page A4 document: 1 catalog, 2 pages, 3 page, 4 content, 5 font; ``extra`` from 6 on."""
    objects = {
        1: b"<< /Type /Catalog /Pages 2 0 R %s>>" % (catalog_extra + b" " if catalog_extra else b""),
        2: b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        3: b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Resources " + _RESOURCES % 5
           + b" /Contents 4 0 R %s>>" % (page_extra + b" " if page_extra else b""),
        4: _stream(_text()),
        5: _FONT,
        **(extra or {}),
    }
    return _assemble(objects)


def _pikepdf_edit(pdf: bytes, edit: Callable[[pikepdf.Pdf], None]) -> bytes:
    """Open ``pdf`` with pikepdf, call ``edit(doc)``, save (no object streams, streams kept as they are)."""
    with pikepdf.open(io.BytesIO(pdf)) as doc:
        edit(doc)
        out = io.BytesIO()
        doc.save(out, object_stream_mode=pikepdf.ObjectStreamMode.disable,
                 stream_decode_level=pikepdf.StreamDecodeLevel.none, fix_metadata_version=False)
    return out.getvalue()


@functools.cache
def _zero_deflate(inflated_bytes: int) -> bytes:
    """A zlib stream of ``inflated_bytes`` zeros (rounded down to MiB), built in milliseconds.

    After a full flush deflate forgets its history, so every further MiB of zeros compresses to the
    same block: compress two MiB, repeat the second block and fix the Adler-32 (for n zeros it is
    ``(n mod 65521) << 16 | 1``)."""
    mib = 1 << 20
    count = max(1, inflated_bytes // mib)
    comp = zlib.compressobj(9)
    first = comp.compress(b"\0" * mib) + comp.flush(zlib.Z_FULL_FLUSH)
    block = comp.compress(b"\0" * mib) + comp.flush(zlib.Z_FULL_FLUSH)
    tail = comp.flush()[:-4]  # the final empty block, without the (wrong) checksum
    total = count * mib
    adler = ((total % 65521) << 16) | 1
    data = first + block * (count - 1) + tail + adler.to_bytes(4, "big")
    return data


def _run(coro: Coroutine[Any, Any, T]) -> T:
    """Run a pyHanko coroutine from sync code, also when the caller is inside an event loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coro).result()


# ------------------------------------------------------------------------------ a foreign PKI


@dataclass(frozen=True, slots=True)
class ForeignPki:
    """A throwaway CA with a signer and a TSA, unrelated to the gateway's PKI (RSA 2048)."""

    ca_cert: asn1_x509.Certificate
    signer: signers.SimpleSigner
    timestamper: DummyTimeStamper
    crl_der: bytes

    def validation_context(self) -> ValidationContext:
        """Trusts this CA only; the CA's (empty) CRL is the revocation info, nothing is fetched."""
        return ValidationContext(trust_roots=[self.ca_cert], crls=[self.crl_der], allow_fetching=False)


_NOT_BEFORE = datetime(2024, 1, 1, tzinfo=UTC)
_NOT_AFTER = datetime(2046, 1, 1, tzinfo=UTC)
_CRL_URL = "http://pki.cizi-ca.invalid/ca.crl"


def _name(cn: str) -> x509.Name:
    return x509.Name([
        x509.NameAttribute(NameOID.COUNTRY_NAME, "SK"),
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Cizí CA s.r.o. (test only)"),
        x509.NameAttribute(NameOID.COMMON_NAME, cn),
    ])


def _asn1_key(key: rsa.RSAPrivateKey) -> asn1_keys.PrivateKeyInfo:
    der = key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    return asn1_keys.PrivateKeyInfo.load(der)


def _asn1_cert(cert: x509.Certificate) -> asn1_x509.Certificate:
    return asn1_x509.Certificate.load(cert.public_bytes(serialization.Encoding.DER))


@functools.cache
def foreign_pki() -> ForeignPki:
    """The foreign PKI of this process (generated once: three RSA keys take ~0.2 s)."""
    ca_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ca_name = _name("Cizí kořenová CA")
    ca_ski = x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key())
    ca = (
        x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(_NOT_BEFORE).not_valid_after(_NOT_AFTER)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(
            digital_signature=False, content_commitment=False, key_encipherment=False, data_encipherment=False,
            key_agreement=False, key_cert_sign=True, crl_sign=True, encipher_only=False, decipher_only=False,
        ), critical=True)
        .add_extension(ca_ski, critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    aki = x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski)

    def issue(cn: str, *, tsa: bool) -> tuple[rsa.RSAPrivateKey, x509.Certificate]:
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        builder = (
            x509.CertificateBuilder().subject_name(_name(cn)).issuer_name(ca_name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(_NOT_BEFORE).not_valid_after(_NOT_AFTER)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(
                digital_signature=True, content_commitment=not tsa, key_encipherment=False, data_encipherment=False,
                key_agreement=False, key_cert_sign=False, crl_sign=False, encipher_only=False, decipher_only=False,
            ), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .add_extension(aki, critical=False)
            .add_extension(x509.CRLDistributionPoints([x509.DistributionPoint(
                full_name=[x509.UniformResourceIdentifier(_CRL_URL)], relative_name=None, reasons=None,
                crl_issuer=None,
            )]), critical=False)
        )
        if tsa:
            builder = builder.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.TIME_STAMPING]), critical=True)
        return key, builder.sign(ca_key, hashes.SHA256())

    signer_key, signer_cert = issue("Petr Cizinec", tsa=False)
    tsa_key, tsa_cert = issue("Cizí TSA", tsa=True)
    crl = (
        x509.CertificateRevocationListBuilder().issuer_name(ca_name)
        .last_update(_NOT_BEFORE).next_update(_NOT_AFTER)
        .add_extension(aki, critical=False).add_extension(x509.CRLNumber(1), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    ca_asn1 = _asn1_cert(ca)
    return ForeignPki(
        ca_cert=ca_asn1,
        signer=signers.SimpleSigner(
            signing_cert=_asn1_cert(signer_cert), signing_key=_asn1_key(signer_key),
            cert_registry=SimpleCertificateStore.from_certs([ca_asn1]),
        ),
        timestamper=DummyTimeStamper(tsa_cert=_asn1_cert(tsa_cert), tsa_key=_asn1_key(tsa_key),
                                     certs_to_embed=SimpleCertificateStore.from_certs([ca_asn1])),
        crl_der=crl.public_bytes(serialization.Encoding.DER),
    )


def _foreign_sign(pdf: bytes, meta: signers.PdfSignatureMetadata) -> bytes:
    pki = foreign_pki()
    pdf_signer = signers.PdfSigner(meta, signer=pki.signer, timestamper=pki.timestamper)
    out = io.BytesIO()
    _run(pdf_signer.async_sign_pdf(IncrementalPdfFileWriter(io.BytesIO(pdf), strict=False), output=out))
    return out.getvalue()


@functools.cache
def _contract() -> bytes:
    return make_pdf(2, "Kupní smlouva")


# ------------------------------------------------------------------------------ the reproducers


def contents_indirect_array() -> bytes:
    """Class D6 (Adobe LiveCycle / AEM Forms exports, e.g. pdf.js's ``issue*`` LiveCycle files):
    the page's ``/Contents 9 0 R`` is an indirect reference to an *array* ``[10 0 R 11 0 R]`` of
    content streams. Valid PDF (ISO 32000 allows any object to be indirect); qpdf --check is clean."""

    def edit(doc: pikepdf.Pdf) -> None:
        page = doc.pages[0].obj
        data = page.Contents.read_bytes()
        cut = data.index(b"\n", len(data) // 2) + 1  # a token boundary between two operators
        parts = [doc.make_stream(data[:cut]), doc.make_stream(data[cut:])]
        page.Contents = doc.make_indirect(pikepdf.Array(parts))

    return _pikepdf_edit(make_pdf(), edit)


def leading_junk(prefix: bytes = b"\xef\xbb\xbf") -> bytes:
    """Class D13 (qpdf's ``leading-junk.pdf``; files saved by text tools with a UTF-8 BOM, mail
    gateways and portals that prepend a header line or a few hundred bytes): ``prefix`` before
    ``%PDF-``. The xref offsets stay those of the original file, i.e. relative to ``%PDF-`` as
    readers assume; poppler, pdf.js and qpdf open it. Try ``leading_junk(b"x" * 600)`` too."""
    return prefix + make_pdf()


def too_small_size() -> bytes:
    """Class D2 (pdf.js's ``issue2840.pdf``, ``issue14618.pdf``, ``bug847420.pdf``: generators that
    write ``/Size`` as the number of objects of the last update only): objects 1..12 are real, the
    trailer says ``/Size 6``. Objects 6..12 are the content stream of page 1 (6), the page tree
    node (7), both pages (8, 10), page 2's content (11) and a barcode-like image XObject (12).
    A writer that numbers its new objects from ``/Size`` overwrites them in its incremental update:
    pyHanko 0.38 starts at ``/Size + 1``, so 7..12 become its signature field, font and
    signature objects, the page tree is gone (poppler then sees 0 pages) while the new signature
    still validates. poppler and qpdf open the original (qpdf warns "reported number of objects (6)
    is not one plus the highest object number (12)")."""
    width, height = 64, 8
    bars = bytes(0 if (x * 7 + x // 3) % 5 < 2 else 255 for x in range(width)) * height
    image = _stream(zlib.compress(bars), b"/Type /XObject /Subtype /Image /Width %d /Height %d "
                    b"/ColorSpace /DeviceGray /BitsPerComponent 8 /Filter /FlateDecode" % (width, height))
    page = (b"<< /Type /Page /Parent 7 0 R /MediaBox [0 0 595 842] /Resources << /Font << /F1 3 0 R >> "
            b"/XObject << /Im1 12 0 R >> >> /Contents %d 0 R >>")
    objects = {
        1: b"<< /Type /Catalog /Pages 7 0 R >>",
        2: b"<< /Producer (too_small_size reproducer) >>",
        3: _FONT,
        4: b"<< /Type /ExtGState /CA 1 /ca 1 >>",
        5: b"[/PDF /Text /ImageB]",
        6: _stream(_text(1)),
        7: b"<< /Type /Pages /Kids [8 0 R 10 0 R] /Count 2 >>",
        8: page % 6,
        9: b"<< /Title (unused outline-like object) >>",
        10: page % 11,
        11: _stream(_text(2, b"Carovy kod zasilky:") + b"\nq 256 0 0 48 72 660 cm /Im1 Do Q"),
        12: image,
    }
    return _assemble(objects, size=6, trailer_extra=b"/Info 2 0 R")


@functools.cache
def signed_by_foreign_ca() -> bytes:
    """Class "signed elsewhere" (DSS's ``pdf-signed-original.pdf``, ``pades-t-level-extended.pdf``;
    contracts already signed by the other party with its qualified certificate): one ordinary
    PAdES B-T signature (signature timestamp, no DSS, no document timestamp) by :func:`foreign_pki`,
    invisible, over a two-page ``make_pdf`` contract."""
    meta = signers.PdfSignatureMetadata(field_name="Podpis-protistrana", subfilter=fields.SigSeedSubFilter.PADES,
                                        name="Petr Cizinec", reason="Souhlasím", md_algorithm="sha256")
    return _foreign_sign(_contract(), meta)


@functools.cache
def document_timestamped() -> bytes:
    """Class D1 (DSS's ``PAdES-LT.pdf``, ``john-doe-lta.pdf``, ``Signature-P-*``, ``*-LTA*.pdf``:
    files signed B-LT/B-LTA by another service): a foreign B-T signature, then its certificates and
    the CA's CRL in a DSS, then a document timestamp (``/Type /DocTimeStamp``,
    ``ETSI.RFC3161``) - what pyHanko's ``use_pades_lta=True`` + ``embed_validation_info=True``
    writes. Everything chains to :func:`foreign_pki`, which the gateway does not trust."""
    pki = foreign_pki()
    meta = signers.PdfSignatureMetadata(
        field_name="Podpis-protistrana", subfilter=fields.SigSeedSubFilter.PADES, name="Petr Cizinec",
        md_algorithm="sha256", embed_validation_info=True, use_pades_lta=True,
        validation_context=pki.validation_context(),
    )
    return _foreign_sign(_contract(), meta)


@functools.cache
def certified_no_changes() -> bytes:
    """Class D7 (DSS's ``dss-2236/hide.pdf``-like certified originals; invoices and official
    documents "certified, no changes allowed" by the issuer): a certification (author) signature
    with ``/DocMDP`` ``/P 1`` by :func:`foreign_pki`. Any further signature breaks the certification;
    the honest answer is a 4xx at upload."""
    meta = signers.PdfSignatureMetadata(
        field_name="Certifikace", subfilter=fields.SigSeedSubFilter.PADES, name="Petr Cizinec",
        md_algorithm="sha256", certify=True, docmdp_permissions=fields.MDPPerm.NO_CHANGES,
    )
    return _foreign_sign(_contract(), meta)


@functools.cache
def certified_form_filling() -> bytes:
    """Class D11 (DSS's ``dss-2554/certified-changes-permitted.pdf``): a certification signature with
    ``/DocMDP`` ``/P 2`` (form filling and signing allowed) by :func:`foreign_pki`. Adding an
    approval signature is allowed, and the certification must stay valid."""
    meta = signers.PdfSignatureMetadata(
        field_name="Certifikace", subfilter=fields.SigSeedSubFilter.PADES, name="Petr Cizinec",
        md_algorithm="sha256", certify=True, docmdp_permissions=fields.MDPPerm.FILL_FORMS,
    )
    return _foreign_sign(_contract(), meta)


NEED_APPEARANCES_VALUE = "Jana Nováková"


def need_appearances() -> bytes:
    """Class D9 (qpdf's ``need-appearances.pdf``, ``form-mod1.pdf``, pypdf's ``libreoffice-form.pdf``,
    forms filled by pypdf/PDFtk/web form fillers that only set ``/V``): the AcroForm says
    ``/NeedAppearances true`` and the text field ``jmeno`` has ``/V`` (:data:`NEED_APPEARANCES_VALUE`)
    but its widget has no ``/AP``: viewers show the value only because they are told to build the
    appearance themselves."""

    def edit(doc: pikepdf.Pdf) -> None:
        page = doc.pages[0].obj
        helv = doc.make_indirect(pikepdf.Dictionary(Type=pikepdf.Name.Font, Subtype=pikepdf.Name.Type1,
                                                    BaseFont=pikepdf.Name.Helvetica,
                                                    Encoding=pikepdf.Name.WinAnsiEncoding))
        widget = doc.make_indirect(pikepdf.Dictionary(
            Type=pikepdf.Name.Annot, Subtype=pikepdf.Name.Widget, FT=pikepdf.Name.Tx, T="jmeno",
            TU="Jméno a příjmení", V=NEED_APPEARANCES_VALUE, DA="/Helv 12 Tf 0 g",
            Rect=[72, 150, 320, 172], F=4, P=page,
        ))
        page.Annots = pikepdf.Array([widget])
        doc.Root.AcroForm = doc.make_indirect(pikepdf.Dictionary(
            Fields=[widget], NeedAppearances=True, DA="/Helv 0 Tf 0 g",
            DR=pikepdf.Dictionary(Font=pikepdf.Dictionary(Helv=helv)),
        ))

    return _pikepdf_edit(make_pdf(), edit)


def direct_annotations() -> bytes:
    """Class D10 (DSS's ``PDF.pdf``, qpdf's ``good10.pdf``/``good11.pdf``, pypdf's
    ``annotated_pdf.pdf``; older Acrobat/Distiller and some LaTeX builds): the page's ``/Annots``
    array holds a Text (sticky note) and a Link annotation as *direct* dictionaries."""

    def edit(doc: pikepdf.Pdf) -> None:
        note = pikepdf.Dictionary(Type=pikepdf.Name.Annot, Subtype=pikepdf.Name.Text, Rect=[520, 760, 540, 780],
                                  Contents="Zkontrolovat článek 3", T="Revize", Name=pikepdf.Name.Comment)
        link = pikepdf.Dictionary(Type=pikepdf.Name.Annot, Subtype=pikepdf.Name.Link, Rect=[72, 735, 400, 750],
                                  Border=[0, 0, 0], A=pikepdf.Dictionary(S=pikepdf.Name.URI,
                                                                         URI="https://example.cz/priloha"))
        doc.pages[0].obj.Annots = pikepdf.Array([note, link])

    return _pikepdf_edit(make_pdf(), edit)


def direct_page_kids() -> bytes:
    """Class D7 (qpdf's ``direct-pages.pdf``, pyHanko's ``page-tree-direct-kid.pdf``; hand-rolled
    generators): the page tree's ``/Kids`` holds both page dictionaries *directly*
    (``/Kids [<< /Type /Page ... >> << /Type /Page ... >>]``), not as references. Illegal per ISO
    32000 (pages must be indirect) but poppler, pdf.js and qpdf open it."""
    page = (b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Resources " + _RESOURCES % 5
            + b" /Contents %d 0 R >>")
    objects = {
        1: b"<< /Type /Catalog /Pages 2 0 R >>",
        2: b"<< /Type /Pages /Kids [" + page % 3 + b" " + page % 4 + b"] /Count 2 >>",
        3: _stream(_text(1)),
        4: _stream(_text(2)),
        5: _FONT,
    }
    return _assemble(objects)


def circular_form_tree() -> bytes:
    """Class D7 (pyHanko's ``form-tree-circular-ref-input.pdf``; broken form editors): the field
    ``adresa`` (6) has a kid ``ulice`` (7) whose ``/Kids`` lists its widget (8) *and* ``6 0 R``,
    its own parent. A naive walk of ``/AcroForm /Fields`` never ends. poppler and qpdf open it."""
    widget = (b"<< /Type /Annot /Subtype /Widget /Parent 7 0 R /Rect [72 150 320 172] /F 4 /P 3 0 R "
              b"/AP << /N 9 0 R >> >>")
    return _one_page(
        catalog_extra=b"/AcroForm << /Fields [6 0 R] /DA (/Helv 0 Tf 0 g) /DR << /Font << /Helv 5 0 R >> >> >>",
        page_extra=b"/Annots [8 0 R]",
        extra={
            6: b"<< /T (adresa) /FT /Tx /Kids [7 0 R] >>",
            7: b"<< /T (ulice) /Parent 6 0 R /V (Dlouha 12) /Kids [8 0 R 6 0 R] >>",
            8: widget,
            9: _stream(b"/Tx BMC BT /F1 12 Tf 2 6 Td (Dlouha 12) Tj ET EMC",
                       b"/Type /XObject /Subtype /Form /BBox [0 0 248 22] /Resources " + _RESOURCES % 5),
        },
    )


@functools.cache
def broken_earlier_signature(garbage: bool = False) -> bytes:
    """Class D7 (DSS's ``pdf-with-empty-sig.pdf``, ``pades-enveloping-empty-bytes-cms.pdf``; a
    signing service that crashed after reserving the signature, a file "repaired" by a tool):
    :func:`signed_by_foreign_ca` with the signature's ``/Contents`` overwritten in place - all
    zeros (``garbage=False``, as in DSS's file) or non-DER bytes. ``/ByteRange`` stays correct, so
    the file is structurally valid (qpdf --check clean); the signature itself cannot be parsed."""
    pdf = bytearray(signed_by_foreign_ca())
    byte_range = re.search(rb"/ByteRange\s*\[\s*0\s+(\d+)\s+(\d+)", pdf)
    assert byte_range is not None
    start, end = int(byte_range[1]) + 1, int(byte_range[2]) - 1  # inside <...>, the gap of the byte range
    assert pdf[start - 1 : start] == b"<" and pdf[end : end + 1] == b">"
    fill = b"DEADBEEF" if garbage else b"0"
    pdf[start:end] = (fill * ((end - start) // len(fill) + 1))[: end - start]
    return bytes(pdf)


BOMB_BYTES = 1536 * 1024 * 1024


def xmp_bomb(inflated_bytes: int = BOMB_BYTES) -> bytes:
    """Class D7 (a crafted upload; the benign cousins are the multi-MB XMP packets of Adobe InDesign
    exports): the catalog's ``/Metadata`` XMP stream is a FlateDecode bomb (1.5 GiB of zeros from
    ~1.5 MB). The page content is ordinary, so page-content checks do not see it."""
    bomb = _stream(_zero_deflate(inflated_bytes), b"/Type /Metadata /Subtype /XML /Filter /FlateDecode")
    return _one_page(catalog_extra=b"/Metadata 6 0 R", extra={6: bomb})


def form_field_bomb(inflated_bytes: int = BOMB_BYTES) -> bytes:
    """Class D7 (a crafted upload): a filled text field whose widget's normal appearance stream
    (``/AP /N``) is a FlateDecode bomb (1.5 GiB of zeros from ~1.5 MB, zeros are whitespace, so it
    would even render as empty). The page content is ordinary."""
    bomb = _stream(_zero_deflate(inflated_bytes),
                   b"/Type /XObject /Subtype /Form /BBox [0 0 248 22] /Filter /FlateDecode")
    widget = (b"<< /Type /Annot /Subtype /Widget /FT /Tx /T (cislo_smlouvy) /V (2026/117) /DA (/Helv 12 Tf 0 g) "
              b"/Rect [72 150 320 172] /F 4 /P 3 0 R /AP << /N 7 0 R >> >>")
    return _one_page(
        catalog_extra=b"/AcroForm << /Fields [6 0 R] /DA (/Helv 0 Tf 0 g) /DR << /Font << /Helv 5 0 R >> >> >>",
        page_extra=b"/Annots [6 0 R]",
        extra={6: widget, 7: bomb},
    )


_A85_GROUP = b"+<VdL"  # ASCII85 for four spaces: decodes to blank (whitespace-only) content
_A85_SECONDS_PER_STREAM = 0.3
"""CPU seconds pyHanko 0.38 needs to decode one of the streams below (1 MiB of ASCII85 -> 0.8 MiB)
on this project's 2-core machine (29 streams take ~8 s to decode); a faster machine needs a larger
``seconds_hint``."""


def slow_to_decode(seconds_hint: float = 10.0) -> bytes:
    """Class "slow to read" (a crafted upload; benign cousins are scanner drivers and old
    PostScript converters that write ASCII85/ASCIIHex-encoded content): a one-page document whose
    ``/Contents`` array has an ordinary text stream followed by ``n`` streams with
    ``/Filter [/FlateDecode /ASCII85Decode]``, each ~1.5 KB in the file and 1 MiB of ASCII85 text
    (0.8 MiB of spaces) once inflated. pyHanko's ASCII85 decoder is pure Python (~3 MB/s), so
    the inspector spends about ``seconds_hint`` CPU seconds (see
    :data:`_A85_SECONDS_PER_STREAM`) while the file stays tiny (~45 KB for 10 s) and memory stays
    low (every stream stays under pyHanko's 1 MiB ratio floor; the document's 256 MiB decode budget
    caps the effect at ~140 streams). qpdf and poppler decode it in milliseconds."""
    streams = max(1, round(seconds_hint / _A85_SECONDS_PER_STREAM))
    encoded = zlib.compress(_A85_GROUP * ((1 << 20) // len(_A85_GROUP) - 1) + b"~>", 9)
    slow = _stream(encoded, b"/Filter [/FlateDecode /ASCII85Decode]")
    extra = {6 + i: slow for i in range(streams)}
    refs = b" ".join(b"%d 0 R" % num for num in (4, *extra))
    objects = {
        1: b"<< /Type /Catalog /Pages 2 0 R >>",
        2: b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        3: b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Resources " + _RESOURCES % 5
           + b" /Contents [" + refs + b"] >>",
        4: _stream(_text()),
        5: _FONT,
        **extra,
    }
    return _assemble(objects)


def annotations_null() -> bytes:
    """Class D7 (pdf.js/qpdf fuzz-style files and some PHP generators (TCPDF/FPDI forks) that write
    ``/Annots null`` for "no annotations"): the page has ``/Annots null``, which ISO 32000 treats as
    absent. pyHanko's field code tries ``NullObject.append`` on it."""
    return _one_page(page_extra=b"/Annots null")


def fields_with_non_dict_entries() -> bytes:
    """Class D7 (qpdf's ``form-errors.pdf`` and ``form-bad-fields-array.pdf``; sloppy form
    generators): ``/AcroForm /Fields`` is ``[6 0 R 42 << /T (direct) /FT /Tx /V (x) >> 7 0 R]`` - a
    proper text field with a widget, a number, a *direct* field dictionary and a reference to a
    non-dictionary (an array). Viewers skip what is not a field."""
    widget = (b"<< /Type /Annot /Subtype /Widget /FT /Tx /T (jmeno) /V (Jana Novakova) /DA (/Helv 12 Tf 0 g) "
              b"/Rect [72 150 320 172] /F 4 /P 3 0 R /AP << /N 8 0 R >> >>")
    return _one_page(
        catalog_extra=b"/AcroForm << /Fields [6 0 R 42 << /T (direct) /FT /Tx /V (x) >> 7 0 R] "
                      b"/DA (/Helv 0 Tf 0 g) /DR << /Font << /Helv 5 0 R >> >> >>",
        page_extra=b"/Annots [6 0 R]",
        extra={
            6: widget,
            7: b"[1 2 3]",
            8: _stream(b"/Tx BMC BT /F1 12 Tf 2 6 Td (Jana Novakova) Tj ET EMC",
                       b"/Type /XObject /Subtype /Form /BBox [0 0 248 22] /Resources " + _RESOURCES % 5),
        },
    )


def tiny_contract() -> bytes:
    """A valid one-page contract of 1 KB (Helvetica, nothing embedded): the cheapest file to inspect,
    for load and soak tests."""
    return _one_page()
