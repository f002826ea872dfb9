"""Real-world PDF corpus through the gateway's HTTP API, checked with tools we did not write.

Run: ``make corpus`` (or ``.venv/bin/python bench/corpus.py [--files SUBSTR …] [--jobs N] [--limit N]
[--keep DIR] [--out FILE]``).

Every PDF of ``../shared/pdf-corpus/files`` goes through a real ``esign-gateway serve`` process
(temporary data directory, dev PKI, outbox e-mail and SMS): multipart upload → invitation e-mail →
SMS code → sign, for one signer (three signers for every tenth file, alternately sequential and
parallel) → download. The result is compared with the upload by

- ``pdfsig -nocert`` (poppler): our signatures say "Signature is Valid."; a signature that was valid
  in the upload is still valid; our document timestamps are valid or of a type poppler cannot check;
- pyHanko's validator (``adapters.providers.local.pades.validate`` with the dev CA as trust root, in a
  worker process): our signatures intact, valid, allowed modifications only; our document timestamps
  intact and valid;
- ``pdftotext`` per page, minus what our stamps print: the same words (in another order or, for
  mixed-direction text, regrouped characters: a remark, since pdftotext's layout analysis sees the
  stamp as a new block);
- ``pdftoppm -r 30 -gray`` per page (MediaBox, as pdftoppm renders by default), our stamp boxes masked
  with a margin: identical but for antialiasing (at most 0.1 % of the pixels differ, by at most 8 of
  255 levels); documents of more than 60 pages: the first 30, the last 10 and the stamped pages;
- ``pdfinfo`` page count: the upload's, or one more when the gateway appended its signature page (an
  unsigned upload whose last page has no room): only with exactly one ``document.signature_page_added``
  audit event that matches the API (``documents[0].pages`` and ``prepared_sha256``, every
  ``fields[].source == "signature_page"`` on that page and no other), the page's heading
  (``SIGNATURE_PAGE_HEADING``) and the envelope ID in its ``pdftotext``, and those signers' stamps on it.
  Pages 1..N then go through every check against the upload; the gateway's copy (qpdf's rewrite plus
  the page) renders the same as the upload, and its pages' objects are the upload's (``_Canon``: by
  content, object numbers aside); a repaired upload with a signature page is compared as a repair;
- ``qpdf --check``: no new error and no new kind of warning;
- pikepdf (qpdf): the result starts with the uploaded bytes, and every object of the upload (its
  xref entries) is where it was or has the same content in the result, except the ones an
  incremental signature update rewrites (catalog, pages that got an annotation and their /Annots
  arrays, AcroForm and its /Fields, /Perms, DSS, Info, Metadata, /Extensions); when pikepdf cannot
  open the result at all (a destroyed page tree), qpdf's JSON of both files is compared instead;
- pikepdf: a filled form field visible in the upload (by /NeedAppearances true or by an appearance
  stream that draws it) is still visible in the result;
- every signer's stamp (its widget, on whatever page), in poppler's display basis (MediaBox, /Rotate
  applied, see ``display_box``): the /Rect lies inside the displayed page (CropBox ∩ MediaBox, 0.5 pt),
  and so do the stamp words ``pdftotext -bbox`` finds; those words are wider than tall and the lines
  run top to bottom ("signed by", name, envelope ID); the words inside the box read the signer's name
  and the envelope ID; no word of the upload's page (``pdftotext -bbox``) and no other stamp of ours lies
  under it (a page the gateway added has nothing to cover); with the page painted black under the
  annotations (a pikepdf copy, ``pdftoppm -r 30 -gray``) the box stays light (median grey > 200).

A create answered 422 ``validation_failed`` on ``signers[k].fields`` "signed elsewhere" (a file signed
elsewhere with no room for a stamp on any page, which cannot take a signature page) is ``needs-placement``;
the file is retried once with a sender's box per signer on page 1 (``SENDER_BOX``). Signed so with every
check passing, the file counts as accepted (the sender's place; words under it are a remark), otherwise
``needs-placement`` is a failure. The summary lists these files either way.

On a ``/NeedAppearances`` form poppler 22 draws a later signer's stamp blank (it redraws every widget
there, signatures included; poppler 23+ does not): when only that fails, the stamp checks run again on
a copy with the flag off, and if they pass there it is a remark.

The process exits 1 when any file falls in a failure class (see ``FAILURE_CLASSES``).
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import contextlib
import csv
import dataclasses
import hashlib
import html
import io
import itertools
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CORPUS = ROOT.parent / "shared" / "pdf-corpus"
EXE = ROOT / ".venv" / "bin" / "esign-gateway"
THIS = Path(__file__).resolve()

FAILURE_CLASSES = (
    "accepted-then-unsignable", "changed-content", "overwritten-object", "lost-form-value",
    "invalid-signature", "valid-refused", "needs-placement", "5xx", "no-response", "qpdf-new-errors",
    "stamp-outside-cropbox", "stamp-not-upright", "stamp-unreadable", "stamp-over-text", "stamp-no-background",
)
CHECKS = ("sig", "hanko", "text", "render", "pages", "qpdf", "objects", "form", "stamp")
"""Columns of a row: pdfsig, pyHanko, pdftotext, pdftoppm, pdfinfo, qpdf --check, pikepdf objects
(and the byte prefix), pikepdf form values, our stamps (several failure classes, see ``stamp_problems``)."""
CHECK_CLASS = {
    "sig": "invalid-signature", "hanko": "invalid-signature", "text": "changed-content",
    "render": "changed-content", "pages": "changed-content", "qpdf": "qpdf-new-errors",
    "objects": "overwritten-object", "form": "lost-form-value",
}
MARK = {"ok": "✓", "fail": "✗", "n/a": "n/a", "-": "·"}

SIGNER_NAMES = ("Jana Nováková", "Petr Šťastný", "Ľubomír Kováč")
LANGUAGE = "cs"
STAMP_TEXT = re.compile(
    r"(?:(?<!\S)\))?Elektronicky\s+pod(?:epsáno|písané|epsal|písal)\s*\(?\s*a?\s*\)?"  # cs/sk (catalog)
    r"|Signed\s+electronically\s+by"
    r"|ID\s+obálky\s*:?|Envelope\s+ID\s*:?"
    r"|\d{4}-\d{2}-\d{2}\s+\d{2}:\d{2}:\d{2}\s+UTC"
)
"""What our stamp prints besides the signer's name and the envelope ID (pades.py's stamp text)."""
SIGNATURE_PAGE_HEADING = {"cs": "Podpisová strana", "sk": "Podpisová strana", "en": "Signature page"}
"""The heading of the page the gateway appends when the last page has no room (signature_page.py)."""
SENDER_BOX = {"page": 1, "x": 20, "width": 120, "height": 44}
"""The box a sender gives for a file the gateway cannot place a stamp on (422 "signed elsewhere"): one
per signer, ``SENDER_BOX_STEP`` points lower each."""
SENDER_BOX_TOP, SENDER_BOX_STEP = 20, 50
BIDI_CONTROLS = re.compile("[\u200e\u200f\u202a-\u202e\u2066-\u2069]")

RENDER_DPI = 30
RENDER_MASK_MARGIN_PX = 3
RENDER_MAX_LEVEL_DIFF = 8
RENDER_MAX_DIFF_SHARE = 0.001
FULL_RENDER_MAX_PAGES = 60
RENDER_HEAD, RENDER_TAIL = 30, 10
TOOL_TIMEOUT = 180.0
"""Seconds for one external tool or one worker check (a hang is a failed check, not a hung run)."""


# ----------------------------------------------------------------------------- corpus


@dataclass(frozen=True)
class CorpusFile:
    index: int
    """Position in the sorted corpus: stable, whatever ``--files`` selects (every tenth: 3 signers)."""
    path: Path
    observed: str

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def short_class(self) -> str:
        o = self.observed
        if "signs cleanly" in o:
            return "guard"
        if "wrongly refused" in o:
            return "must-accept"
        if m := re.match(r"refused by the gateway today \((\w+)\)", o):
            return f"refused:{m.group(1).removeprefix('pdf_')}"
        codes = re.findall(r"\bD\d+\b|text\?", o)
        return ",".join(dict.fromkeys(codes)) or (o[:12] or "?")

    @property
    def must_accept(self) -> bool:
        """Valid files refused on 2026-12-01 (D6, D13, …), and the regression guard: files that signed
        cleanly then must not start being refused."""
        return ("valid PDF wrongly refused" in self.observed or "signs cleanly" in self.observed
                or bool(re.search(r"\bD(6|13)\b", self.observed)))

    def signers(self, count: int | None = None) -> list[dict[str, Any]]:
        """One signer; three for every tenth file (sequential 1, 2, 3 and parallel, alternately)."""
        count = count or (3 if self.index % 10 == 0 else 1)
        sequential = (self.index // 10) % 2 == 0
        return [
            {"name": SIGNER_NAMES[k], "email": f"corpus{self.index}s{k}@example.cz",
             "phone": f"+420601{self.index * 3 + k:06d}", "order": k + 1 if sequential else 1}
            for k in range(count)
        ]


def load_corpus(corpus: Path) -> list[CorpusFile]:
    observed: dict[str, str] = {}
    sources = corpus / "SOURCES.csv"
    if sources.exists():
        with sources.open(newline="", encoding="utf-8") as fh:
            observed = {row["file"]: row.get("observed_today", "") for row in csv.DictReader(fh)}
    paths = sorted(p for p in (corpus / "files").iterdir() if p.is_file())
    return [CorpusFile(i, p, observed.get(p.name, "")) for i, p in enumerate(paths)]


# ----------------------------------------------------------------------------- results


@dataclass
class Result:
    file: CorpusFile
    upload: str = "-"
    accepted: bool = False
    signers: list[str] = field(default_factory=list)
    checks: dict[str, str] = field(default_factory=lambda: dict.fromkeys(CHECKS, "-"))
    notes: list[str] = field(default_factory=list)
    failures: set[str] = field(default_factory=set)
    seconds: float = 0.0
    envelope_id: str | None = None
    completed: bool = False
    needs_placement: str = ""
    """The create's 422 "signed elsewhere" (``needs-placement``): which signer, what it said."""
    placed_retry: str = ""
    """What the create answered when retried with a sender's box per signer (``SENDER_BOX``)."""

    @property
    def retry_outcome(self) -> str:
        """Whether the sender-placed path signed, for a ``needs-placement`` file."""
        if not self.placed_retry:
            return "not retried"
        if not self.placed_retry.startswith("201"):
            return f"retry refused too: {self.placed_retry}"
        if not self.completed:
            return "retry accepted (201) but not signed"
        other = sorted(self.failures - {"needs-placement"})
        return "retry with sender boxes signed, all checks pass" if not other else \
            f"retry with sender boxes signed; failed: {', '.join(other)}"

    def fail(self, cls: str, note: str) -> None:
        self.failures.add(cls)
        self.notes.append(f"[{cls}] {note}")

    def check(self, name: str, ok: bool | None, note: str = "") -> None:
        """``ok`` None: not applicable."""
        if ok is None:
            self.checks[name] = "n/a"
            if note:
                self.notes.append(f"({name} n/a: {note})")
        elif ok:
            self.checks[name] = "ok"
        else:
            self.checks[name] = "fail"
            self.fail(CHECK_CLASS[name], f"{name}: {note}" if note else name)

    @property
    def outcome(self) -> str:
        if self.failures:
            return "FAILED"
        if self.accepted:
            return "signed, all checks pass"
        return "refused (ok)"


# ----------------------------------------------------------------------------- external tools


@dataclass(frozen=True)
class Run:
    rc: int | None
    """None: timed out (killed)."""
    out: bytes
    err: bytes


async def run_tool(*argv: str, seconds: float = TOOL_TIMEOUT) -> Run:
    proc = await asyncio.create_subprocess_exec(
        *argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), seconds)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()
        return Run(None, b"", b"timeout")
    except asyncio.CancelledError:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        raise
    return Run(proc.returncode, out, err)


def tool_error(run: Run) -> str:
    if run.rc is None:
        return "timed out"
    lines = run.err.decode("utf-8", "replace").strip().splitlines()
    return f"exit {run.rc}" + (f": {lines[-1][:120]}" if lines else "")


async def page_count(pdf: Path) -> int | None:
    run = await run_tool("pdfinfo", str(pdf))
    if m := re.search(rb"^Pages:\s+(\d+)", run.out, re.MULTILINE):
        return int(m.group(1))
    return None


@dataclass(frozen=True)
class PdfSig:
    field: str
    validation: str
    kind: str
    signer: str


async def pdfsig(pdf: Path) -> list[PdfSig] | str:
    """Per-signature blocks of ``pdfsig -nocert`` (only the signature's own validity matters: the dev
    CA is untrusted by design), or the error."""
    run = await run_tool("pdfsig", "-nocert", str(pdf))
    text = run.out.decode("utf-8", "replace")
    if "does not contain any signatures" in text + run.err.decode("utf-8", "replace"):
        return []
    sigs: list[dict[str, str]] = []
    for line in text.splitlines():
        if re.match(r"^Signature #\d+:", line):
            sigs.append({})
        elif sigs and (m := re.match(r"^\s+- ([^:]+): (.*)$", line)):
            sigs[-1][m.group(1).strip()] = m.group(2).strip()
    if run.rc != 0 and not sigs:
        return tool_error(run)
    return [PdfSig(s.get("Signature Field Name", "?"), s.get("Signature Validation", "?"),
                   s.get("Signature Type", "?"), s.get("Signer Certificate Common Name", "?")) for s in sigs]


def our_fields(expected: list[str], before: list[PdfSig] | str, after: list[PdfSig] | str) -> list[str]:
    """Our signers' signature fields: ``Signature-<signer id>``, or, where the gateway signed one of the
    upload's own empty signature fields instead (in form order), the next field that is signed in the
    result (not as a document timestamp) and was not in the upload, in pdfsig's (form) order."""
    if isinstance(after, str) or isinstance(before, str):
        return expected
    signed_before = {s.field for s in before if s.kind != "?"}
    present = {s.field for s in after}
    new = [s.field for s in after if s.kind not in ("?", "ETSI.RFC3161") and s.field not in signed_before
           and s.field not in expected]
    return [name if name in present or not new else new.pop(0) for name in expected]


async def pdftotext_pages(pdf: Path) -> list[str] | str:
    run = await run_tool("pdftotext", "-enc", "UTF-8", str(pdf), "-")
    if run.rc != 0:
        return tool_error(run)
    pages = run.out.decode("utf-8", "replace").split("\f")
    if pages and not pages[-1].strip():
        pages.pop()
    return pages


async def qpdf_check(pdf: Path) -> tuple[int | None, set[str]]:
    """Exit code (0 fine, 2 errors, 3 warnings) and the normalised messages (the file name, offsets
    and object numbers replaced, so that the same problem before and after compares equal)."""
    run = await run_tool("qpdf", "--check", str(pdf))
    msgs = set()
    for raw in (run.out + b"\n" + run.err).decode("utf-8", "replace").splitlines():
        line = raw.replace(str(pdf), "FILE").strip()
        if line.startswith(("WARNING:", "ERROR:", "qpdf:")) and "operation succeeded with warnings" not in line:
            msgs.add(re.sub(r"\d+", "#", line))
    return run.rc, msgs


# ----------------------------------------------------------------------------- rendering


def parse_pgm(data: bytes) -> tuple[int, int, bytes]:
    """Binary PGM (P5, 8 bit) as pdftoppm -gray writes it: width, height, pixels."""
    tokens: list[bytes] = []
    pos = 0
    while len(tokens) < 4:
        while data[pos:pos + 1].isspace():
            pos += 1
        if data[pos:pos + 1] == b"#":
            pos = data.index(b"\n", pos) + 1
            continue
        start = pos
        while not data[pos:pos + 1].isspace():
            pos += 1
        tokens.append(data[start:pos])
    if tokens[0] != b"P5" or int(tokens[3]) > 255:
        raise ValueError("not an 8-bit binary PGM")
    w, h = int(tokens[1]), int(tokens[2])
    pixels = data[pos + 1: pos + 1 + w * h]
    if len(pixels) != w * h:
        raise ValueError("truncated PGM")
    return w, h, pixels


Box = tuple[float, float, float, float]
"""x0, y0, x1, y1 with x0 <= x1, y0 <= y1."""

# The display basis: pdftoppm and ``pdftotext -bbox`` (both without ``-cropbox``) show a page in points
# (pdftoppm: pixels at -r DPI) from the top-left corner of the MediaBox as displayed, y down, /Rotate
# applied (normalised as poppler does: -90 is 270, 450 is 90, a value that is no multiple of 90 is 0).
# Found by experiment with poppler 22.12 on pages with offset and reversed boxes, /Rotate 0/90/180/270/
# -90/450/45: pdftotext's <page width height> stays the *unrotated* box size, but the word boxes follow
# /Rotate; words outside the MediaBox are dropped, words outside the CropBox are kept. With ``-cropbox``
# the origin is the top-left corner of CropBox ∩ MediaBox (rotated the same way) and words outside it are
# dropped. The stamp checks use the MediaBox basis, so that text outside the CropBox is still seen.


def page_rotation(value: Any) -> int:
    r = int(value or 0) % 360
    return r if r in (0, 90, 180, 270) else 0


def display_box(rect: Iterable[float], media: Iterable[float], rotate: Any) -> Box:
    """A user-space rectangle (a widget's /Rect) in the display basis (see above); independent of the
    product's placement code."""
    mx0, my0, mx1, my1 = _norm(media)
    mw, mh = mx1 - mx0, my1 - my0
    rot = page_rotation(rotate)
    x0, y0, x1, y1 = _norm(rect)
    xs, ys = [], []
    for x, y in ((x0, y0), (x1, y1), (x0, y1), (x1, y0)):
        u, v = x - mx0, y - my0
        if rot == 90:
            px, py = v, u
        elif rot == 180:
            px, py = mw - u, v
        elif rot == 270:
            px, py = mh - v, mw - u
        else:
            px, py = u, mh - v
        xs.append(px)
        ys.append(py)
    return min(xs), min(ys), max(xs), max(ys)


def displayed_page(geom: dict[str, Any]) -> Box:
    """The page as a viewer shows it (CropBox ∩ MediaBox; no CropBox: the MediaBox) in the display basis;
    an empty intersection gives an empty box."""
    media = _norm(geom["media"])
    crop = _norm(geom.get("crop") or media)
    x0, y0 = max(media[0], crop[0]), max(media[1], crop[1])
    x1, y1 = max(x0, min(media[2], crop[2])), max(y0, min(media[3], crop[3]))
    return display_box((x0, y0, x1, y1), media, geom.get("rotate"))


def _norm(box: Iterable[float]) -> Box:
    x0, y0, x1, y1 = (float(v) for v in box)
    return min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1)


def inside(inner: Box, outer: Box, tolerance: float) -> bool:
    return (inner[0] >= outer[0] - tolerance and inner[1] >= outer[1] - tolerance
            and inner[2] <= outer[2] + tolerance and inner[3] <= outer[3] + tolerance)


def overlaps(a: Box, b: Box, tolerance: float) -> bool:
    """The boxes share more than ``tolerance`` in both directions."""
    return min(a[2], b[2]) - max(a[0], b[0]) > tolerance and min(a[3], b[3]) - max(a[1], b[1]) > tolerance


def page_pixel_boxes(geom: dict[str, Any], width: int, height: int,
                     margin: int = RENDER_MASK_MARGIN_PX) -> list[tuple[int, int, int, int]]:
    """Our widgets' /Rect on a page rendered by pdftoppm (MediaBox, /Rotate applied) → pixel boxes
    (x0, y0, x1, y1), widened by ``margin`` pixels (negative: the interior)."""
    mx0, my0, mx1, my1 = _norm(geom["media"])
    mw, mh = mx1 - mx0, my1 - my0
    disp_w, disp_h = (mh, mw) if page_rotation(geom.get("rotate")) in (90, 270) else (mw, mh)
    if disp_w <= 0 or disp_h <= 0:
        return []
    sx, sy = width / disp_w, height / disp_h
    boxes = []
    for rect in geom["rects"]:
        x0, y0, x1, y1 = display_box(rect, geom["media"], geom.get("rotate"))
        boxes.append((int(x0 * sx) - margin, int(y0 * sy) - margin,
                      int(x1 * sx) + 1 + margin, int(y1 * sy) + 1 + margin))
    return boxes


def compare_pgm(before: bytes, after: bytes, geom: dict[str, Any] | None) -> str | None:
    """None when equal outside the masks (within the antialiasing tolerance), else what differs."""
    w0, h0, p0 = parse_pgm(before)
    w1, h1, p1 = parse_pgm(after)
    if (w0, h0) != (w1, h1):
        return f"size {w0}x{h0} → {w1}x{h1}"
    if p0 == p1:
        return None
    a, b = bytearray(p0), bytearray(p1)
    for x0, y0, x1, y1 in page_pixel_boxes(geom, w0, h0) if geom else []:
        x0, x1 = max(0, x0), min(w0, x1)
        for y in range(max(0, y0), min(h0, y1)):
            if x1 > x0:
                a[y * w0 + x0: y * w0 + x1] = bytes(x1 - x0)
                b[y * w0 + x0: y * w0 + x1] = bytes(x1 - x0)
    if a == b:
        return None
    small = big = 0
    for pa, pb in zip(a, b, strict=True):
        if pa != pb:
            if abs(pa - pb) > RENDER_MAX_LEVEL_DIFF:
                big += 1
            else:
                small += 1
    if big == 0 and small <= RENDER_MAX_DIFF_SHARE * w0 * h0:
        return None
    return f"{big + small} of {w0 * h0} px differ ({big} by > {RENDER_MAX_LEVEL_DIFF} levels)"


def same_bytes(a: Path, b: Path) -> bool:
    return a.read_bytes() == b.read_bytes()


def repair_render_changes(upload: dict[int, Path], repaired: dict[int, Path]) -> tuple[str, bool] | None:
    """What a repair changed in poppler's rendering: None if nothing, else (description, too much).
    Up to RENDER_MAX_DIFF_SHARE of a page's pixels may change, by any amount."""
    notes, too_much = [], False
    for page, p0 in sorted(upload.items()):
        p1 = repaired.get(page)
        if p1 is None:
            return f"page {page} not rendered", True
        w0, h0, a = parse_pgm(p0.read_bytes())
        w1, h1, b = parse_pgm(p1.read_bytes())
        if (w0, h0) != (w1, h1) or w0 * h0 <= 4:
            continue  # poppler could not size the broken page: the text check covers it
        changed = sum(1 for x, y in zip(a, b, strict=True) if x != y)
        if changed:
            notes.append(f"page {page}: {changed} of {w0 * h0} px")
            too_much = too_much or changed > RENDER_MAX_DIFF_SHARE * w0 * h0
    return ("; ".join(notes[:3]), too_much) if notes else None


def copy_render_changes(upload: dict[int, Path], copy: dict[int, Path]) -> list[str]:
    """The upload's pages in the gateway's copy with a signature page (no repair): the same rendering,
    within the antialiasing tolerance of ``compare_pgm``."""
    diffs = []
    for page, p0 in sorted(upload.items()):
        p1 = copy.get(page)
        if d := "not rendered" if p1 is None else compare_pgm(p0.read_bytes(), p1.read_bytes(), None):
            diffs.append(f"page {page}: {d}")
    return diffs


def render_ranges(pages: int | None, stamped: Iterable[int]) -> list[tuple[int, int]]:
    """1-based inclusive page ranges to render (bounded for long documents)."""
    if pages is None:
        return [(1, RENDER_HEAD)]
    if pages <= FULL_RENDER_MAX_PAGES:
        return [(1, pages)] if pages else []
    wanted = set(range(1, RENDER_HEAD + 1)) | set(range(pages - RENDER_TAIL + 1, pages + 1))
    wanted |= {p + 1 for p in stamped if 0 <= p < pages}
    ranges: list[tuple[int, int]] = []
    for p in sorted(wanted):
        if ranges and ranges[-1][1] == p - 1:
            ranges[-1] = (ranges[-1][0], p)
        else:
            ranges.append((p, p))
    return ranges


def _rendered(out_dir: Path) -> dict[int, Path]:
    return {int(m.group(1)): p for p in out_dir.glob("r*-*.pgm") if (m := re.search(r"-(\d+)\.pgm$", p.name))}


async def render(pdf: Path, out_dir: Path, ranges: list[tuple[int, int]]) -> dict[int, Path] | str:
    """Page number (1-based) → PGM file."""
    await asyncio.to_thread(out_dir.mkdir, parents=True, exist_ok=True)
    errors = []
    for i, (first, last) in enumerate(ranges):
        run = await run_tool("pdftoppm", "-r", str(RENDER_DPI), "-gray", "-f", str(first), "-l", str(last),
                             str(pdf), str(out_dir / f"r{i}"))
        if run.rc != 0:
            errors.append(tool_error(run))
    pages = await asyncio.to_thread(_rendered, out_dir)
    if not pages and errors:
        return errors[0]
    return pages


# ----------------------------------------------------------------------------- text


def page_words(text: str, extra: Iterable[str]) -> list[str]:
    """A page's words without what our stamps print. Words, not lines: a new text block on the page
    (the stamp) may make pdftotext break or order the page's lines differently."""
    text = BIDI_CONTROLS.sub("", text)
    for phrase in sorted(extra, key=len, reverse=True):
        text = text.replace(phrase, " ")
    text = STAMP_TEXT.sub(" ", text)
    words = text.split()
    names = {w for phrase in extra for w in phrase.split()}  # a name printed in another order (RTL)
    return [w for w in words if w not in names]


def compare_text(before: list[str], after: list[str], extra: list[str]) -> tuple[str | None, str]:
    """(what differs or None, a remark)."""
    if len(before) != len(after):
        return f"{len(before)} → {len(after)} text pages", ""
    remark = ""
    for i, (b, a) in enumerate(zip(before, after, strict=True)):
        wb, wa = page_words(b, extra), page_words(a, extra)
        if wb == wa:
            continue
        if Counter(wb) == Counter(wa):
            remark = f"page {i + 1}: same words, another order"
            continue
        if Counter("".join(wb)) == Counter("".join(wa)):  # mixed-direction runs regrouped by the bidi pass
            remark = f"page {i + 1}: same characters, another order (bidi)"
            continue
        gone, new = Counter(wb) - Counter(wa), Counter(wa) - Counter(wb)
        return (f"page {i + 1}: {len(wb)} → {len(wa)} words; gone {' '.join(list(gone.elements())[:8])!r}, "
                f"new {' '.join(list(new.elements())[:8])!r}")[:240], remark
    return None, remark


# ----------------------------------------------------------------------------- stamps
# Every one of our stamps, checked in the display basis (see ``display_box``) against what poppler shows:
# inside the displayed page, upright, readable, over none of the upload's words, light even on a page
# painted black under it.

STAMP_TOKEN = re.compile(
    r"\)?Elektronicky|pod(?:epsáno|písané|epsal|písal)\s*\(?a?\)?|Signed|electronically|by|ID|obálky:?|Envelope|ID:"
    r"|\d{4}-\d{2}-\d{2}|\d{2}:\d{2}:\d{2}|UTC"
)
"""One whitespace-separated token of what our stamp prints besides names and the envelope ID."""
STAMP_PAGE_TOLERANCE = 0.5
"""Points a widget's /Rect may stick out of the displayed page."""
STAMP_WORD_TOLERANCE = 2.0
"""Points a word box of pdftotext (font ascent and descent) may stick out of a box."""
STAMP_OVER_TOLERANCE = 1.0
"""Points a stamp may share with a word of the upload (in both directions)."""
STAMP_LIGHT_MEDIAN = 200
"""The stamp box's median grey level (of 255) on the page painted black under the annotations."""
STAMP_CLASSES = ("stamp-outside-cropbox", "stamp-not-upright", "stamp-unreadable", "stamp-over-text",
                 "stamp-no-background")
SENDER_OVER_TEXT = "sender-box-over-text"
"""Not a failure: the sender placed the stamp there (see ``stamp_problems``)."""
WORD_TAG = re.compile(r'<word xMin="([^"]+)" yMin="([^"]+)" xMax="([^"]+)" yMax="([^"]+)">(.*?)</word>', re.DOTALL)


@dataclass(frozen=True)
class Word:
    box: Box
    """Display basis (pdftotext -bbox without -cropbox)."""
    text: str

    @property
    def center(self) -> tuple[float, float]:
        return (self.box[0] + self.box[2]) / 2, (self.box[1] + self.box[3]) / 2


@dataclass(frozen=True)
class Stamp:
    page: int
    """1-based."""
    field: str
    signer: str
    rect: Box
    """The widget's /Rect (user space)."""
    box: Box
    """The /Rect in the display basis."""
    flags: int


def _clean(text: str) -> str:
    return " ".join(unicodedata.normalize("NFC", BIDI_CONTROLS.sub("", text)).split())


def parse_bbox_words(xhtml: str) -> list[Word]:
    words = []
    for m in WORD_TAG.finditer(xhtml):
        try:
            box = _norm(float(m.group(k)) for k in range(1, 5))
        except ValueError:
            continue
        if text := _clean(html.unescape(m.group(5))):
            words.append(Word(box, text))
    return words


async def pdftotext_words(pdf: Path, page: int) -> list[Word] | str:
    """The words of one page (1-based) with their boxes in the display basis."""
    run = await run_tool("pdftotext", "-bbox", "-enc", "UTF-8", "-f", str(page), "-l", str(page), str(pdf), "-")
    if run.rc != 0:
        return tool_error(run)
    return parse_bbox_words(run.out.decode("utf-8", "replace"))


def new_words(signed: list[Word], original: list[Word] | None) -> list[Word]:
    """Words of the result's page that the upload's page does not have at the same place (±1 pt)."""
    left: dict[str, list[Box]] = {}
    for w in original or []:
        left.setdefault(w.text, []).append(w.box)
    out = []
    for w in signed:
        boxes = left.get(w.text, [])
        k = next((i for i, b in enumerate(boxes) if all(abs(p - q) <= 1 for p, q in zip(b, w.box, strict=True))),
                 None)
        if k is None:
            out.append(w)
        else:
            boxes.pop(k)
    return out


def is_stamp_word(text: str, names: Iterable[str], envelope_id: str) -> bool:
    """Every token of the word is something a stamp prints (a name, the envelope ID or a part of it
    when wrapped, the fixed text)."""
    known = {t for n in names for t in n.split()}
    tokens = text.split()
    return bool(tokens) and all(t in known or envelope_id in t or (len(t) >= 4 and t in envelope_id)
                                or STAMP_TOKEN.fullmatch(t) for t in tokens)


def page_stamps(index: int, geom: dict[str, Any], signer_of: dict[str, str]) -> list[Stamp]:
    fields = geom.get("fields") or [""] * len(geom["rects"])
    flags = geom.get("flags") or [0] * len(geom["rects"])
    return [Stamp(index + 1, fl, signer_of.get(fl, "?"), _norm(rect),
                  display_box(rect, geom["media"], geom.get("rotate")), fg)
            for rect, fl, fg in zip(geom["rects"], fields, flags, strict=True)]


def _fmt(box: Box) -> str:
    return "[" + " ".join(f"{v:.0f}" for v in box) + "]"


def stamp_problems(stamps: list[Stamp], geom: dict[str, Any], signed_words: list[Word],
                   original_words: list[Word] | None, envelope_id: str, names: Iterable[str],
                   sender_placed: bool = False) -> list[tuple[str, str]]:
    """(failure class, what) for the stamps of one page. ``original_words`` None: the page is not in the
    upload (added by the gateway), nothing to cover there. ``sender_placed``: the sender gave the boxes,
    words of the page under them are a remark (class ``SENDER_OVER_TEXT``)."""
    problems: list[tuple[str, str]] = []
    names = list(names)
    page_box = displayed_page(geom)
    ours = [w for w in new_words(signed_words, original_words) if is_stamp_word(w.text, names, envelope_id)]
    tol = STAMP_WORD_TOLERANCE

    # 1. inside the displayed page: our transform of /Rect, and (independently) pdftotext's stamp words
    for s in stamps:
        if not inside(s.box, page_box, STAMP_PAGE_TOLERANCE):
            problems.append(("stamp-outside-cropbox", f"p{s.page} {s.signer}: box {_fmt(s.box)} (Rect {_fmt(s.rect)}, "
                             f"Rotate {geom.get('rotate')}) not inside the displayed page {_fmt(page_box)}"))
    if outside := [w for w in ours if not inside(w.box, page_box, tol)]:
        problems.append(("stamp-outside-cropbox", f"p{stamps[0].page}: pdftotext finds stamp text {outside[0].text!r} "
                         f"at {_fmt(outside[0].box)}, outside the displayed page {_fmt(page_box)}"))

    for s in stamps:
        mine = [w for w in ours if inside((*w.center, *w.center), s.box, tol)]
        who = f"p{s.page} {s.signer}"
        # 3. readable
        text = " ".join(w.text for w in mine)
        hidden = " (hidden by /F)" if s.flags & (2 | 32) or not s.flags & 4 else ""
        if _clean(s.signer) not in text or envelope_id not in "".join(text.split()):
            problems.append(("stamp-unreadable", f"{who}: pdftotext reads {text[:80]!r} in {_fmt(s.box)}{hidden}"))
        # 2. upright: words wider than tall, lines top to bottom
        tall = [w for w in mine if sum(c.isalpha() for c in w.text) >= 2 and w.box[2] - w.box[0] <= w.box[3] - w.box[1]]
        if tall:
            problems.append(("stamp-not-upright", f"{who}: {len(tall)} of {len(mine)} words taller than wide "
                             f"({tall[0].text[:30]!r} {_fmt(tall[0].box)}; page Rotate {geom.get('rotate')})"))
        else:
            first = (s.signer.split() or [s.signer])[0]
            lines: list[Word] = []
            for w in (next((w for w in mine if re.search(r"Elektronicky|Signed", w.text)), None),
                      next((w for w in mine if first in w.text), None),
                      next((w for w in mine if envelope_id[:8] in "".join(w.text.split())), None)):
                if w is not None and w not in lines:
                    lines.append(w)
            ys = [w.center[1] for w in lines]
            if any(b - a < 1 for a, b in itertools.pairwise(ys)):
                problems.append(("stamp-not-upright", f"{who}: lines not top to bottom ('signed by', name, envelope "
                                 f"ID at y {', '.join(f'{y:.0f}' for y in ys)})"))
        # 4. not over the upload's words, nor over another of our stamps
        if under := [w for w in original_words or [] if overlaps(w.box, s.box, STAMP_OVER_TOLERANCE)]:
            problems.append((SENDER_OVER_TEXT if sender_placed else "stamp-over-text",
                             f"{who}: {len(under)} words of the upload under {_fmt(s.box)}: "
                             + " ".join(w.text for w in under[:6])[:80]))
        for o in stamps:
            if o is not s and o.field > s.field and overlaps(o.box, s.box, STAMP_OVER_TOLERANCE):
                problems.append(("stamp-over-text", f"{who}: over the stamp of {o.signer} {_fmt(o.box)}"))
    return problems


def stamp_median(pgm: bytes, geom: dict[str, Any], rect: Iterable[float]) -> int | None:
    """The median grey level inside a stamp box (one pixel in from its edge) on a rendered page; None
    when fewer than 4 of its pixels are on the page."""
    w, h, pixels = parse_pgm(pgm)
    ((x0, y0, x1, y1),) = page_pixel_boxes({**geom, "rects": [list(rect)]}, w, h, margin=-1)
    x0, y0, x1, y1 = max(0, x0), max(0, y0), min(w, x1), min(h, y1)
    if x1 <= x0 or y1 <= y0 or (x1 - x0) * (y1 - y0) < 4:
        return None
    values = sorted(b"".join(pixels[y * w + x0: y * w + x1] for y in range(y0, y1)))
    return values[len(values) // 2]


# ----------------------------------------------------------------------------- worker process
# pikepdf and pyHanko run in worker processes (JSON lines over stdin/stdout): the event loop that
# drives the HTTP ceremonies keeps going, and a crash or a hang costs one check of one file.


def _pikepdf_fingerprint(obj: Any) -> tuple[Any, ...]:
    import pikepdf

    if not isinstance(obj, pikepdf.Object):
        return ("scalar", repr(obj))
    if isinstance(obj, pikepdf.Stream):
        try:
            raw = obj.read_raw_bytes()
        except Exception as exc:
            raw = f"unreadable: {exc}".encode()
        return ("stream", obj.stream_dict.unparse(), hashlib.sha256(raw).hexdigest())
    return ("object", obj.unparse(resolved=True))


def _describe(obj: Any) -> str:
    import pikepdf

    if obj is None or not isinstance(obj, pikepdf.Object):
        return type(obj).__name__
    try:
        if isinstance(obj, pikepdf.Stream):
            d = obj.stream_dict
            return f"stream {d.get('/Type', '')}{d.get('/Subtype', '')}".strip()
        if isinstance(obj, pikepdf.Dictionary):
            return f"dict {obj.get('/Type', '')}{obj.get('/Subtype', '')}{obj.get('/FT', '')}".strip()
        return obj._type_name if hasattr(obj, "_type_name") else type(obj).__name__
    except Exception:
        return "?"


def _inherited(page: Any, key: str, valid: Callable[[Any], bool] | None = None) -> Any:
    """A page attribute, inherited through /Parent (ISO 32000 §7.7.3.4); cycles end the walk. With
    ``valid``, a value it rejects counts as absent (the walk goes on to the parent)."""
    import pikepdf

    node, seen = page, set()
    while isinstance(node, pikepdf.Dictionary) and node.objgen not in seen:
        if node.objgen != (0, 0):
            seen.add(node.objgen)
        if key in node and (valid is None or valid(node[key])):
            return node[key]
        node = node.get("/Parent")
    return None


def _page_box(page: Any, key: str) -> list[float] | None:
    """/MediaBox or /CropBox as poppler reads it (poppler 22.12, by experiment): inherited, normalised,
    an all-zero box ignored (a zero-width one is kept); no MediaBox at all: poppler's letter size."""
    box = _box(_inherited(page, key, lambda v: bool((b := _box(v)) and any(b))))
    return box if box is not None or key != "/MediaBox" else [0, 0, 612, 792]


def _box(value: Any) -> list[float] | None:
    try:
        x0, y0, x1, y1 = (float(v) for v in value)
    except Exception:
        return None
    return [min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1)]


def _rotation_of(page: Any) -> int:
    """/Rotate as poppler reads it (an integer, inherited; anything else counts as 0)."""
    try:
        return page_rotation(int(_inherited(page, "/Rotate") or 0))
    except (TypeError, ValueError):
        return 0


def _field_name(annot: Any) -> str | None:
    """A widget's fully qualified field name (the /T of it and its parents)."""
    import pikepdf

    node, seen, parts = annot, set(), []
    while isinstance(node, pikepdf.Dictionary) and node.objgen not in seen and len(parts) < 50:
        if node.objgen != (0, 0):
            seen.add(node.objgen)
        if "/T" in node:
            parts.append(str(node["/T"]))
        node = node.get("/Parent")
    return ".".join(reversed(parts)) if parts else None


def _annots(page: Any) -> list[Any]:
    annots = page.get("/Annots")
    try:
        return list(annots) if annots is not None else []
    except Exception:
        return []


def _qpdf_json_objects(path: str) -> dict[str, str]:
    """``obj:N G R`` → a digest of qpdf's JSON of the object (streams: dictionary and raw data)."""
    run = subprocess.run(["qpdf", "--json=2", "--json-key=qpdf", "--json-stream-data=inline", "--decode-level=none",
                          path], capture_output=True, timeout=TOOL_TIMEOUT, check=False)
    if not run.stdout:
        raise RuntimeError(f"qpdf --json: exit {run.returncode} {run.stderr[-200:]!r}")
    objects = json.loads(run.stdout)["qpdf"][1]
    return {k: hashlib.sha256(json.dumps(v, sort_keys=True).encode()).hexdigest() for k, v in objects.items()}


def _op_objects(req: dict[str, Any]) -> dict[str, Any]:
    """Stamp geometry of the result, overwritten objects of the base, lost form values."""
    import pikepdf

    out: dict[str, Any] = {"geometry": {}, "signed_error": None}
    try:
        signed = pikepdf.open(req["signed"], inherit_page_attributes=False)
        out["need_appearances"] = _need_appearances(signed)
    except Exception as exc:  # e.g. "unable to find page tree": the page tree was overwritten
        signed = None
        out["signed_error"] = f"pikepdf cannot open the result: {exc}".replace(req["signed"], "signed.pdf")
    ours = set(req["fields"])
    geometry: dict[int, dict[str, Any]] = out["geometry"]
    stamped_pages: set[tuple[int, int]] = set()
    signed_page_annots: dict[tuple[int, int], set[tuple[int, int]]] = {}
    try:
        for i, page in enumerate(signed.pages if signed is not None else []):
            po = page.obj
            annots = _annots(po)
            signed_page_annots[po.objgen] = {a.objgen for a in annots}
            for a in annots:
                name = _field_name(a)
                if name in ours and (rect := _box(a.get("/Rect"))) is not None:
                    g = geometry.setdefault(i, {
                        "rotate": _rotation_of(po),
                        "media": _page_box(po, "/MediaBox"),
                        "crop": _page_box(po, "/CropBox"),
                        "rects": [], "fields": [], "flags": [],
                    })
                    g["rects"].append(rect)
                    g["fields"].append(name)
                    try:
                        g["flags"].append(int(a.get("/F", 0)))
                    except (TypeError, ValueError):
                        g["flags"].append(0)
                    stamped_pages.add(po.objgen)
    except Exception as exc:
        out["signed_error"] = f"pikepdf cannot list the result's pages: {type(exc).__name__}: {exc}"

    if req.get("base") is None:
        return out
    base_bytes, signed_bytes = Path(req["base"]).read_bytes(), Path(req["signed"]).read_bytes()
    out["prefix_ok"] = signed_bytes.startswith(base_bytes)
    if not out["prefix_ok"]:
        out["first_difference"] = next(
            (i for i, (a, b) in enumerate(zip(base_bytes, signed_bytes, strict=False)) if a != b),
            min(len(base_bytes), len(signed_bytes)))
    base = pikepdf.open(req["base"], inherit_page_attributes=False)

    # What an incremental signature update legitimately rewrites.
    allowed: set[tuple[int, int]] = set()

    def allow(obj: Any) -> None:
        if isinstance(obj, pikepdf.Object) and obj.objgen != (0, 0):
            allowed.add(obj.objgen)

    root = base.trailer.get("/Root")
    allow(root)
    allow(base.trailer.get("/Info"))
    if isinstance(root, pikepdf.Dictionary):
        for key in ("/AcroForm", "/Perms", "/DSS", "/Metadata", "/Extensions"):
            allow(root.get(key))
        acro = root.get("/AcroForm")
        if isinstance(acro, pikepdf.Dictionary):
            allow(acro.get("/Fields"))
    with contextlib.suppress(Exception):
        for page in base.pages:
            po = page.obj
            for a in _annots(po):  # an empty signature field of the upload that we signed gets its /V
                if _field_name(a) in ours:
                    allow(a)
                    allow(a.get("/Parent"))
            before = {a.objgen for a in _annots(po)}
            # a page that got a new annotation (our stamp, the document timestamp's widget)
            if po.objgen in stamped_pages or signed_page_annots.get(po.objgen, before) - before:
                allow(po)
                allow(po.get("/Annots"))

    # The objects of the upload are its cross-reference entries (pikepdf's ``objects`` also lists
    # objects qpdf makes up while opening a file, and gives indirect scalars without a number).
    base_xref = _xref_places(req["base"])
    if not base_xref:  # qpdf could not list it: pikepdf's view of the same table
        with contextlib.suppress(Exception):
            base_xref = {og: (e.type, e.offset or e.obj_stream_number or 0, e.obj_stream_index or 0)
                         for og, e in base.get_xref_table().items() if e.type != 0}
    signed_xref = _xref_places(req["signed"])
    xref = [og for og in sorted(base_xref) if og not in allowed and og != (0, 0)]

    def same_place(og: tuple[int, int], depth: int = 0) -> bool:
        """The result's xref points at the very bytes of the upload for this object (the upload is
        a prefix): unchanged, however a reader recovers a damaged object there."""
        a, b = base_xref.get(og), signed_xref.get(og)
        if not out["prefix_ok"] or a is None or a != b:
            return False
        return a[0] == 1 or (depth < 2 and same_place((a[1], 0), depth + 1))

    xref = [og for og in xref if not same_place(og)]
    changed: list[str] = []
    if signed is not None:
        for og in xref:
            try:
                obj = base.get_object(og)
                if obj is None or (isinstance(obj, pikepdf.Object) and obj._type_code == pikepdf.ObjectType.null):
                    continue
                fp = _pikepdf_fingerprint(obj)
            except Exception as exc:
                obj, fp = None, ("error", type(exc).__name__)
            try:
                now = signed.get_object(og)
                fp2 = _pikepdf_fingerprint(now)
            except Exception as exc:
                now, fp2 = None, ("error", type(exc).__name__)
            if fp != fp2:
                now_kind = _describe(now) if now is not None else "gone"
                changed.append(f"{og[0]} {og[1]} R ({_describe(obj)} → {now_kind})")
        out["form"] = _form_values(base, signed)
    else:  # the same comparison through qpdf's JSON of both files
        before, after = _qpdf_json_objects(req["base"]), _qpdf_json_objects(req["signed"])
        for og in xref:
            key = f"obj:{og[0]} {og[1]} R"
            if key in before and before[key] != after.get(key):
                now_kind = "changed" if key in after else "gone"
                changed.append(f"{og[0]} {og[1]} R ({_describe(base.get_object(og))} → {now_kind})")
        out["form"] = {"error": "the result cannot be opened", "filled": 0, "lost": []}
    out["overwritten"] = changed
    out["base_objects"] = len(base_xref)
    return out


def _xref_places(path: str) -> dict[tuple[int, int], tuple[int, int, int]]:
    """Where each object lives by the file's (newest) cross-reference data, as qpdf reads it:
    (1, offset, 0) or (2, object stream, index)."""
    run = subprocess.run(["qpdf", "--show-xref", path], capture_output=True, text=True, timeout=TOOL_TIMEOUT,
                         check=False)
    places: dict[tuple[int, int], tuple[int, int, int]] = {}
    for line in run.stdout.splitlines():
        if m := re.match(r"(\d+)/(\d+): uncompressed; offset = (\d+)", line):
            places[(int(m[1]), int(m[2]))] = (1, int(m[3]), 0)
        elif m := re.match(r"(\d+)/(\d+): compressed; stream = (\d+), (?:offset|index) = (\d+)", line):
            places[(int(m[1]), int(m[2]))] = (2, int(m[3]), int(m[4]))
    return places


def _need_appearances(pdf: Any) -> bool:
    try:
        return bool(pdf.Root.AcroForm.get("/NeedAppearances", False))
    except Exception:
        return False


def _shows_value(widget: Any, ft: str) -> bool:
    """The widget's normal appearance draws something (a text field's value needs a text operator)."""
    import pikepdf

    try:
        ap = widget.get("/AP")
        n = ap.get("/N") if ap is not None else None
        if n is None:
            return False
        if ft in ("/Tx", "/Ch"):
            if not isinstance(n, pikepdf.Stream):
                return False
            content = n.read_bytes()
            return bool(re.search(rb"T[jJ]\b|\bDo\b|\)\s*['\"]", content))
        return True
    except Exception:
        return False


def _form_values(base: Any, signed: Any) -> dict[str, Any]:
    import pikepdf

    base_na, signed_na = _need_appearances(base), _need_appearances(signed)
    filled: list[tuple[str, str, Any]] = []  # name, FT, widget (base)

    def walk(node: Any, inherited_ft: str | None, inherited_v: Any, seen: set[tuple[int, int]], depth: int) -> None:
        if depth > 30 or node.objgen in seen:
            return
        if node.objgen != (0, 0):
            seen.add(node.objgen)
        ft = str(node.get("/FT", inherited_ft)) if node.get("/FT", inherited_ft) is not None else None
        v = node.get("/V", inherited_v)
        kids = node.get("/Kids")
        if kids is not None and isinstance(kids, pikepdf.Array):
            for k in kids:
                if isinstance(k, pikepdf.Dictionary):
                    walk(k, ft, v, seen, depth + 1)
        if "/Rect" not in node or ft in (None, "/Sig"):
            return
        if v is None or (isinstance(v, pikepdf.String) and not str(v)) or (ft == "/Btn" and str(v) == "/Off"):
            return
        try:
            flags = int(node.get("/F", 0))
        except (TypeError, ValueError):
            flags = 0
        rect = _box(node.get("/Rect"))
        if flags & (2 | 32) or rect is None or rect[2] - rect[0] <= 0 or rect[3] - rect[1] <= 0:
            return
        filled.append((_field_name(node) or "?", ft, node))

    try:
        acro = base.Root.get("/AcroForm")
        fields = acro.get("/Fields") if isinstance(acro, pikepdf.Dictionary) else None
        seen: set[tuple[int, int]] = set()
        for f in fields if isinstance(fields, pikepdf.Array) else []:
            if isinstance(f, pikepdf.Dictionary):
                walk(f, None, None, seen, 0)
    except Exception as exc:
        return {"error": f"{type(exc).__name__}: {exc}", "filled": 0, "lost": []}
    lost = []
    for name, ft, widget in filled:
        if not (base_na or _shows_value(widget, ft)):
            continue  # not visible in the upload either
        try:
            now = signed.get_object(widget.objgen) if widget.objgen != (0, 0) else None
        except Exception:
            now = None
        if signed_na or (now is not None and _shows_value(now, ft)):
            continue
        lost.append(name)
    return {"filled": len(filled), "lost": lost, "base_need_appearances": base_na,
            "signed_need_appearances": signed_na}


def _embedded(pdf: bytes) -> list[tuple[str, Any, str | None]]:
    """(field name, pyHanko's EmbeddedPdfSignature or None, why not) for every filled signature
    field: one unreadable container (a foreign signature's) must not hide the others."""
    from pyhanko.pdf_utils.reader import PdfFileReader
    from pyhanko.sign.fields import enumerate_sig_fields
    from pyhanko.sign.validation.pdf_embedded import EmbeddedPdfSignature

    reader = PdfFileReader(io.BytesIO(pdf), strict=False)
    out: list[tuple[str, Any, str | None]] = []
    for name, _sig_obj, field_ref in enumerate_sig_fields(reader, filled_status=True):
        try:
            out.append((name, EmbeddedPdfSignature(reader, field_ref, name), None))
        except Exception as exc:
            out.append((name, None, f"{type(exc).__name__}: {str(exc)[:100]}"))
    return out


def _pyhanko_direct(pdf: bytes, roots: list[Any]) -> list[dict[str, Any]]:
    """The same verdict straight from pyHanko, for when the project's wrapper cannot be imported
    (another engineer's work in progress must not blind this check)."""
    from pyhanko.sign.validation import async_validate_pdf_signature
    from pyhanko_certvalidator import ValidationContext

    async def run() -> list[dict[str, Any]]:
        out = []
        for name, sig, error in _embedded(pdf):
            if sig is not None and sig.sig_object.get("/Type") == "/DocTimeStamp":
                continue
            try:
                if sig is None:
                    raise ValueError(error)
                st = await async_validate_pdf_signature(sig, ValidationContext(trust_roots=roots, allow_fetching=False))
            except Exception as exc:
                out.append({"field": name, "intact": False, "valid": False, "trusted": False,
                            "modification_level": None, "bottom_line": False, "coverage": "",
                            "error": f"{type(exc).__name__}: {str(exc)[:100]}"})
                continue
            out.append({"field": sig.field_name, "intact": st.intact, "valid": st.valid, "trusted": st.trusted,
                        "modification_level": st.modification_level.name if st.modification_level else None,
                        "bottom_line": st.bottom_line, "coverage": st.coverage.name if st.coverage else ""})
        return out

    return asyncio.run(run())


def _op_pyhanko(req: dict[str, Any]) -> dict[str, Any]:
    """pyHanko's verdict on every signature (through the project's thin wrapper
    ``adapters.providers.local.pades.validate``) and on the document timestamps the upload did not have."""
    from pyhanko.keys import load_cert_from_pemder
    from pyhanko.sign.validation import async_validate_pdf_timestamp
    from pyhanko_certvalidator import ValidationContext

    pdf = Path(req["signed"]).read_bytes()
    roots = [load_cert_from_pemder(req["ca"])]
    crash = None
    try:
        if str(ROOT) not in sys.path:
            sys.path.append(str(ROOT))
        from adapters.providers.local import pades

        checks = pades.validate(pdf, pades.load_roots((Path(req["ca"]),)))
        sigs = [
            {"field": c.field_name, "intact": c.intact, "valid": c.valid, "trusted": c.trusted,
             "modification_level": c.modification_level, "bottom_line": c.bottom_line, "coverage": c.coverage}
            for c in checks
        ]
        via = "pades.validate"
    except (ImportError, AttributeError, TypeError) as exc:
        sigs, via = _pyhanko_direct(pdf, roots), f"pyHanko directly ({type(exc).__name__} from pades)"
    except Exception as exc:  # the validator gave up on the file: which signature does pyHanko fail on?
        via, crash = "pades.validate", f"{type(exc).__name__}: {str(exc)[:120]}"
        try:
            sigs = _pyhanko_direct(pdf, roots)
        except Exception as exc2:
            sigs, crash = [], f"{crash}; per signature too: {type(exc2).__name__}: {str(exc2)[:120]}"

    # Signature fields of the upload (pdfsig's list and pyHanko's): the rest is ours.
    base_fields = set(req["base_fields"])
    with contextlib.suppress(Exception):
        base_fields |= {name for name, _sig, _err in _embedded(Path(req["base"]).read_bytes())}

    async def stamps() -> list[dict[str, Any]]:
        out = []
        for name, sig, error in _embedded(pdf):
            if name in base_fields or name in req["fields"]:
                continue  # a foreign signature, or one of our signers'
            if sig is None:
                out.append({"field": name, "intact": False, "valid": False, "error": error})
                continue
            if sig.sig_object.get("/Type") != "/DocTimeStamp":
                out.append({"field": name, "intact": False, "valid": False, "error": "an unexpected new signature"})
                continue
            try:
                st = await async_validate_pdf_timestamp(
                    sig, validation_context=ValidationContext(trust_roots=roots, allow_fetching=False))
                out.append({"field": name, "intact": st.intact, "valid": st.valid, "trusted": st.trusted})
            except Exception as exc:
                out.append({"field": name, "intact": False, "valid": False, "error": repr(exc)[:200]})
        return out

    try:
        timestamps = asyncio.run(stamps())
    except Exception as exc:
        timestamps = [{"field": "?", "intact": False, "valid": False, "error": f"{type(exc).__name__}: {exc}"[:200]}]
    return {"signatures": sigs, "timestamps": timestamps, "via": via, "crash": crash}


def _op_darken(req: dict[str, Any]) -> dict[str, Any]:
    """A copy of the result (``out``, a scratch file) whose ``pages`` (0-based) are painted black over
    their content and under their annotations: an opaque stamp still renders light there."""
    import pikepdf

    with pikepdf.open(req["signed"]) as pdf:
        for i in req["pages"]:
            page = pdf.pages[i]
            x0, y0, x1, y1 = _page_box(page.obj, "/MediaBox") or [0, 0, 612, 792]
            page.contents_add(pdf.make_stream(b"q\n"), prepend=True)
            page.contents_add(pdf.make_stream(f"\nQ q 0 g {x0} {y0} {x1 - x0} {y1 - y0} re f Q\n".encode()))
        pdf.save(req["out"])
    return {"pages": len(req["pages"])}


def _op_flag_off(req: dict[str, Any]) -> dict[str, Any]:
    """A copy of the result (``out``) with ``/NeedAppearances false``: what viewers show that keep
    signature appearances on such forms (poppler ≥ 23, pdf.js, pdfium)."""
    import pikepdf

    with pikepdf.open(req["signed"]) as pdf:
        pdf.Root.AcroForm.NeedAppearances = False
        pdf.save(req["out"])
    return {"ok": True}


CANON_BUDGET = 3_000_000
"""Objects visited by ``_Canon`` per file before the comparison gives up (n/a)."""
INHERITABLE = ("/Resources", "/MediaBox", "/CropBox", "/Rotate")
STREAM_FRAMING = ("/Length", "/Filter", "/DecodeParms", "/DL")


class _CanonBudget(Exception):
    pass


class _Canon:
    """Digests of a document's pages that do not depend on object numbers, nor on whether an object
    is direct or indirect: what qpdf changes when it rewrites a file (pikepdf ``save``, which is how
    the gateway appends its signature page). A page is its dictionary with the inherited attributes
    resolved (qpdf pushes them onto the pages when it adds one) and without /Parent; a reference to a
    page is its position; the page tree is one token; a reference back to an object being digested is
    its distance up the path; a stream is its dictionary without the framing keys and its decoded data
    (raw data and filters when qpdf cannot decode it)."""

    def __init__(self, pdf: Any) -> None:
        self.pdf = pdf
        self.pages = {p.obj.objgen: i for i, p in enumerate(pdf.pages)}
        self.memo: dict[tuple[int, int], bytes] = {}
        self.path: dict[tuple[int, int], int] = {}
        self.left = CANON_BUDGET

    def page(self, index: int) -> bytes:
        import pikepdf

        po = self.pdf.pages[index].obj
        items = {k: po[k] for k in po.keys() if k != "/Parent"}  # noqa: SIM118 (pikepdf)
        for key in INHERITABLE:
            value = _inherited(po, key)
            if value is not None:
                items[key] = value
        self.path[po.objgen] = 0
        try:
            digest, _ = self._dict(items, 0)
        finally:
            self.path.pop(po.objgen, None)
        assert isinstance(po, pikepdf.Dictionary)
        return digest

    def root(self, key: str) -> bytes:
        value = self.pdf.Root.get(key)
        return self.visit(value, 0)[0] if value is not None else b"absent"

    def visit(self, obj: Any, depth: int) -> tuple[bytes, int]:
        """(digest, the smallest depth a back-reference inside reaches; a big number for none)."""
        import pikepdf

        self.left -= 1
        if self.left < 0:
            raise _CanonBudget
        none = 1 << 30
        if not isinstance(obj, pikepdf.Object) or not isinstance(obj, pikepdf.Dictionary | pikepdf.Array
                                                                  | pikepdf.Stream):
            if isinstance(obj, pikepdf.Object):
                try:
                    return b"s" + obj.unparse(resolved=True), none
                except Exception:
                    return b"?", none
            if isinstance(obj, int | Decimal) and not isinstance(obj, bool):  # 0.0 and 0: the same number
                return b"n" + str(Decimal(obj).normalize()).encode(), none
            return b"v" + repr(obj).encode(), none
        og = obj.objgen
        if og != (0, 0):
            if og in self.pages:
                return b"P%d" % self.pages[og], none
            if og in self.path:
                return b"^%d" % (depth - self.path[og]), self.path[og]
            if og in self.memo:
                return self.memo[og], none
        if isinstance(obj, pikepdf.Dictionary) and obj.get("/Type") == "/Pages":
            return b"T", none
        if og != (0, 0):
            self.path[og] = depth
        try:
            if isinstance(obj, pikepdf.Stream):
                digest, low = self._stream(obj, depth)
            elif isinstance(obj, pikepdf.Dictionary):
                digest, low = self._dict({k: obj[k] for k in obj.keys()}, depth)  # noqa: SIM118 (pikepdf)
            else:
                parts, low = [], none
                for item in obj:
                    d, lo = self.visit(item, depth + 1)
                    parts.append(d)
                    low = min(low, lo)
                digest = hashlib.sha256(b"[" + b",".join(parts) + b"]").digest()
        finally:
            if og != (0, 0):
                self.path.pop(og, None)
        if low >= depth:
            if og != (0, 0):
                self.memo[og] = digest
            low = none
        return digest, low

    def _dict(self, items: dict[str, Any], depth: int, prefix: bytes = b"<<") -> tuple[bytes, int]:
        parts, low = [prefix], 1 << 30
        for key in sorted(items):
            d, lo = self.visit(items[key], depth + 1)
            parts.append(key.encode("utf-8", "replace") + b"=" + d)
            low = min(low, lo)
        return hashlib.sha256(b";".join(parts)).digest(), low

    def _stream(self, obj: Any, depth: int) -> tuple[bytes, int]:
        try:
            data, skip = b"decoded" + obj.read_bytes(), STREAM_FRAMING
        except Exception:
            try:
                data, skip = b"raw" + obj.read_raw_bytes(), ("/Length",)
            except Exception as exc:
                data, skip = f"unreadable {type(exc).__name__}".encode(), ("/Length",)
        d = obj.stream_dict
        items = {k: d[k] for k in d.keys() if k not in skip}  # noqa: SIM118 (pikepdf)
        return self._dict(items, depth, b"stream " + hashlib.sha256(data).digest())


def _op_same_pages(req: dict[str, Any]) -> dict[str, Any]:
    """The gateway's copy with its signature page (``prepared``) against the upload: pages 1..N and
    the catalog's /AcroForm the same (``_Canon``), and exactly one page more."""
    import pikepdf

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 50_000))
    with pikepdf.open(req["base"], inherit_page_attributes=False) as base, \
            pikepdf.open(req["prepared"], inherit_page_attributes=False) as prepared:
        a, b = _Canon(base), _Canon(prepared)
        n, m = len(base.pages), len(prepared.pages)
        out: dict[str, Any] = {"pages": n, "prepared_pages": m, "differ": [], "acroform_same": None}
        try:
            for i in range(min(n, m)):
                if a.page(i) != b.page(i):
                    out["differ"].append(i + 1)
            out["acroform_same"] = a.root("/AcroForm") == b.root("/AcroForm")
        except (_CanonBudget, RecursionError) as exc:
            out["unchecked"] = f"gave up after {CANON_BUDGET - max(a.left, 0) + CANON_BUDGET - max(b.left, 0)} " \
                               f"objects ({type(exc).__name__})"
        return out


WORKER_OPS: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "objects": _op_objects, "pyhanko": _op_pyhanko, "darken": _op_darken, "flag_off": _op_flag_off,
    "same_pages": _op_same_pages,
}


def worker_main() -> None:
    out = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)  # a library's print() must not break the protocol
    for line in sys.stdin:
        req = json.loads(line)
        try:
            reply = {"ok": True, "result": WORKER_OPS[req["op"]](req)}
        except Exception as exc:
            reply = {"ok": False, "error": f"{type(exc).__name__}: {str(exc)[:300]}"}
        out.write(json.dumps(reply) + "\n")
        out.flush()


class WorkerPool:
    """N long-lived ``corpus.py --worker`` processes; a crashed or hung one is replaced."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.idle: asyncio.Queue[asyncio.subprocess.Process] = asyncio.Queue()
        self.all: set[asyncio.subprocess.Process] = set()

    async def _spawn(self) -> asyncio.subprocess.Process:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, str(THIS), "--worker",
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
            limit=64 * 1024 * 1024,
        )
        self.all.add(proc)
        return proc

    async def start(self) -> None:
        for _ in range(self.size):
            self.idle.put_nowait(await self._spawn())

    async def call(self, op: str, seconds: float = TOOL_TIMEOUT, **req: Any) -> dict[str, Any]:
        proc = await self.idle.get()
        healthy = False
        try:
            assert proc.stdin is not None and proc.stdout is not None
            proc.stdin.write((json.dumps({"op": op, **req}) + "\n").encode())
            await proc.stdin.drain()
            line = await asyncio.wait_for(proc.stdout.readline(), seconds)
            if not line:
                rc = await proc.wait()
                return {"ok": False, "error": f"worker crashed (exit {rc})"}
            healthy = True
            return json.loads(line)
        except TimeoutError:
            return {"ok": False, "error": f"worker timed out after {seconds:.0f} s"}
        except (BrokenPipeError, ConnectionResetError):
            return {"ok": False, "error": f"worker crashed (exit {proc.returncode})"}
        finally:
            if not healthy:
                self._kill(proc)
                proc = await self._spawn()
            self.idle.put_nowait(proc)

    def _kill(self, proc: asyncio.subprocess.Process) -> None:
        self.all.discard(proc)
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()

    async def close(self) -> None:
        for proc in list(self.all):
            if proc.stdin is not None:
                proc.stdin.close()
            self._kill(proc)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(proc.wait(), 5)


# ----------------------------------------------------------------------------- the gateway


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Gateway:
    """A real ``esign-gateway serve`` with its own data directory and a tenant for the run."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.port = _free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.env = {**os.environ, "ESIGN_DATA_DIR": str(data_dir), "ESIGN_ENV": "dev", "ESIGN_LOG_LEVEL": "WARNING",
                    "ESIGN_LOG_JSON": "false", "ESIGN_PUBLIC_URL": self.base}
        for key in ("ESIGN_DATABASE_URL", "ESIGN_SMTP_URL", "ESIGN_SMS_URL", "ESIGN_TSA_URL", "ESIGN_PROVIDER"):
            self.env.pop(key, None)
        self.proc: subprocess.Popen[bytes] | None = None
        self.api_key = ""
        self.log_path = data_dir / "gateway.log"

    def _cli(self, *args: str) -> str:
        try:
            return subprocess.run([str(EXE), *args], env=self.env, check=True, capture_output=True, text=True,
                                  timeout=120).stdout
        except subprocess.CalledProcessError as exc:
            tail = "\n".join((exc.stderr or "").strip().splitlines()[-15:])
            raise RuntimeError(f"esign-gateway {args[0]} failed (exit {exc.returncode}):\n{tail}") from None

    def start(self) -> None:
        self._cli("migrate")
        tenant = json.loads(self._cli("tenant", "create", "--name", "Corpus s.r.o.", "--paid", "--plan", "custom",
                                      "--documents", "1000000", "--fee", "0", "--json"))
        self.api_key = tenant["api_key"]
        (self.data_dir / "outbox" / "email").mkdir(parents=True, exist_ok=True)
        (self.data_dir / "outbox" / "sms").mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen([str(EXE), "serve", "--port", str(self.port)], env=self.env,
                                         stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)

    @property
    def ca_path(self) -> Path:
        return self.data_dir / "pki" / "dev-ca.pem"  # ensure_dev_pki(settings.pki_dir)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def log_tail(self, lines: int = 5) -> str:
        try:
            return "\n".join(self.log_path.read_text("utf-8", "replace").splitlines()[-lines:])
        except OSError:
            return ""


class Outbox:
    """Watches the outbox folders: the first signer link per e-mail address, the SMS codes per phone."""

    LINK = re.compile(rb"/sign/([A-Za-z0-9_\-]+)")
    TO = re.compile(rb"^To:.*?([\w.+-]+@[\w.-]+)", re.MULTILINE)

    def __init__(self, root: Path) -> None:
        self.folders = (root / "email", root / "sms")
        self.seen: set[str] = set()
        self.links: dict[str, str] = {}
        self.codes: dict[str, list[str]] = {}
        self.changed = asyncio.Event()

    def scan(self) -> None:
        new = False
        for folder in self.folders:
            with os.scandir(folder) as entries:
                paths = [e.path for e in entries if e.path not in self.seen and not e.name.startswith(".")]
            for path in sorted(paths):
                self.seen.add(path)
                try:
                    raw = Path(path).read_bytes()
                except OSError:
                    self.seen.discard(path)
                    continue
                if path.endswith(".json"):
                    d = json.loads(raw)
                    if m := re.search(r"\b(\d{6})\b", d.get("text", "")):
                        self.codes.setdefault(d["to"], []).append(m.group(1))
                        new = True
                elif (link := self.LINK.search(raw.replace(b"=\r\n", b"").replace(b"=\n", b""))) and (
                        to := self.TO.search(raw)):
                    self.links.setdefault(to.group(1).decode().lower(), link.group(1).decode())
                    new = True
        if new:
            self.changed.set()
            self.changed = asyncio.Event()

    async def watch(self) -> None:
        while True:
            self.scan()
            await asyncio.sleep(0.05)

    async def wait(self, get: Callable[[], str | None], seconds: float) -> str | None:
        deadline = time.monotonic() + seconds
        while (value := get()) is None:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.changed.wait(), min(left, 1.0))
        return value

    async def link(self, email: str, seconds: float) -> str | None:
        return await self.wait(lambda: self.links.get(email.lower()), seconds)

    async def code(self, phone: str, seconds: float) -> str | None:
        return await self.wait(lambda: self.codes[phone].pop(0) if self.codes.get(phone) else None, seconds)


# ----------------------------------------------------------------------------- signature page


def signature_page_claim(envelope: dict[str, Any], events: list[dict[str, Any]] | None,
                         upload_sha: str) -> tuple[int | None, list[str]]:
    """(the 1-based page the gateway says it appended to the document, what contradicts that): None
    when neither the audit trail nor a signer's field speaks of a signature page. The API says it by
    ``documents[0].pages``, ``prepared_sha256`` and the signers' ``fields[].source == "signature_page"``
    on that page; the trail by exactly one ``document.signature_page_added`` event that matches."""
    doc = (envelope.get("documents") or [{}])[0]
    added = [e for e in events or [] if e.get("type") == "document.signature_page_added"]
    placed = [(str(s.get("name")), fl) for s in envelope.get("signers") or [] for fl in s.get("fields") or []
              if fl.get("document_id") in (None, doc.get("id"))]
    if not added and not any(fl.get("source") == "signature_page" for _, fl in placed):
        return None, []
    page, prepared = doc.get("pages"), doc.get("prepared_sha256")
    problems = []
    if events is None:
        problems.append("the audit trail cannot be read")
    elif len(added) != 1:
        problems.append(f"{len(added)} document.signature_page_added events, not 1")
    for e in added[:1]:
        d = e.get("data") or {}
        for key, want in (("document_id", doc.get("id")), ("sha256", upload_sha), ("prepared_sha256", prepared),
                          ("page", page)):
            if d.get(key) != want:
                problems.append(f"the event's {key} {str(d.get(key))[:16]!r} is not {str(want)[:16]!r}")
    if not prepared or prepared == upload_sha:
        problems.append(f"documents[0].prepared_sha256 is {str(prepared)[:16]!r}")
    if not any(fl.get("source") == "signature_page" for _, fl in placed):
        problems.append("no signer's field has source signature_page")
    for name, fl in placed:
        if (fl.get("source") == "signature_page") != (fl.get("page") == page):
            problems.append(f"{name}: field on page {fl.get('page')} with source {fl.get('source')!r}, "
                            f"the signature page is {page}")
    return page if isinstance(page, int) else None, problems


# ----------------------------------------------------------------------------- one file


class NoResponse(Exception):
    pass


@dataclass(frozen=True)
class Signed:
    """A completed envelope's result, and what it must be compared with."""

    path: Path
    fields: list[str]
    """Our signature fields, ``Signature-<signer id>``."""
    envelope: dict[str, Any]
    base: Path | None
    """What the signatures were added to: the upload, the prepared copy (repaired, or with the signature
    page appended, or both), or None when the gateway prepared a copy that cannot be downloaded."""
    base_note: str = ""
    events: list[dict[str, Any]] | None = None
    """The audit trail (``GET …/audit``, JSON); None when it cannot be read."""
    sender_placed: bool = False
    """Every signer's box was given by the sender (the ``needs-placement`` retry): covering the page's
    words there is the sender's choice, a remark."""

    def events_of(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.events or [] if e.get("type") == kind]


class Http:
    def __init__(self, session: Any, base: str, api_key: str, timeout: float) -> None:
        self.session = session
        self.base = base
        self.auth = {"Authorization": f"Bearer {api_key}"}
        self.timeout = timeout

    async def request(self, method: str, path: str, *, auth: bool = True, headers: dict[str, str] | None = None,
                      **kw: Any) -> tuple[int, bytes, str]:
        import aiohttp

        headers = {**(self.auth if auth else {}), **(headers or {})}
        try:
            async with asyncio.timeout(self.timeout):
                async with self.session.request(method, self.base + path, headers=headers or None, **kw) as r:
                    return r.status, await r.read(), r.content_type
        except TimeoutError:
            raise NoResponse(f"{method} {path.split('?')[0][:60]}: no response in {self.timeout:.0f} s") from None
        except aiohttp.ClientError as exc:
            raise NoResponse(f"{method} {path.split('?')[0][:60]}: {type(exc).__name__}") from None


def problem_code(body: bytes) -> str:
    try:
        d = json.loads(body)
        return str(d.get("code") or d.get("title") or "?")
    except (ValueError, AttributeError):
        return body[:60].decode("utf-8", "replace")


def needs_placement(status: int, body: bytes) -> str | None:
    """For the create's 422 that asks the sender for a stamp's place (a file signed elsewhere without
    room, which cannot take a signature page): "signers[k].fields: message"."""
    if status != 422:
        return None
    try:
        d = json.loads(body)
        errors = d.get("errors") or [{}]
        where, message = str(errors[0].get("field", "")), str(errors[0].get("message", ""))
    except (ValueError, AttributeError, TypeError):
        return None
    if d.get("code") == "validation_failed" and re.fullmatch(r"signers\[\d+\]\.fields", where) \
            and "signed elsewhere" in message:
        return f"{where}: {message}"
    return None


def sender_boxes(signers: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The signers with a sender's box each (``SENDER_BOX``), one under the other on page 1."""
    return [{**s, "fields": [{**SENDER_BOX, "y": SENDER_BOX_TOP + k * SENDER_BOX_STEP}]}
            for k, s in enumerate(signers)]


async def _none() -> None:
    return None


def _keep(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


class Runner:
    def __init__(self, args: argparse.Namespace, gateway: Gateway, http: Http, outbox: Outbox,
                 pool: WorkerPool, scratch: Path) -> None:
        self.args = args
        self.gateway = gateway
        self.http = http
        self.outbox = outbox
        self.pool = pool
        self.scratch = scratch

    async def call(self, r: Result, method: str, path: str, **kw: Any) -> tuple[int, bytes, str]:
        status, body, ctype = await self.http.request(method, path, **kw)
        if status >= 500:
            r.fail("5xx", f"{method} {path.split('?')[0][:50]} → {status} {problem_code(body)}")
        return status, body, ctype

    async def run(self, f: CorpusFile) -> Result:
        r = Result(f)
        t0 = time.perf_counter()
        work = self.scratch / f"f{f.index}"
        work.mkdir(parents=True, exist_ok=True)
        try:
            signed = await self.ceremony(f, r, work)
            if signed is not None:
                await self.checks(f, r, work, signed)
        except NoResponse as exc:
            r.fail("no-response", str(exc))
            if r.accepted and not r.completed and "accepted-then-unsignable" not in r.failures:
                r.fail("accepted-then-unsignable", "the ceremony did not finish")
        except Exception as exc:  # a bug of this script must not hide the other files' results
            r.notes.append(f"HARNESS ERROR {type(exc).__name__}: {exc}")
            r.failures.add("harness-error")
        finally:
            shutil.rmtree(work, ignore_errors=True)
        if r.needs_placement:
            outcome = r.retry_outcome
            r.notes.append(f"(placement: {outcome})")
            if outcome == "retry with sender boxes signed, all checks pass":
                # Accepted with the sender's place (the 422 names the field and says why): not a refusal
                # of the file. Listed in the summary; a retry that fails keeps the failure.
                r.failures.discard("needs-placement")
        r.seconds = time.perf_counter() - t0
        return r

    async def create(self, r: Result, f: CorpusFile, data: bytes, signers: list[dict[str, Any]]) -> tuple[int, bytes]:
        import aiohttp

        envelope = {"record": {"type": "deal", "id": f"corpus-{f.index}", "name": f.name[:300]},
                    "name": f"Corpus {f.index}: {f.name}"[:300], "language": LANGUAGE, "signers": signers,
                    "send": True}
        form = aiohttp.FormData()
        form.add_field("envelope", json.dumps(envelope), content_type="application/json")
        form.add_field("document", data, filename=f.name, content_type="application/pdf")
        status, body, _ = await self.call(r, "POST", "/v1/envelopes", data=form)
        return status, body

    async def ceremony(self, f: CorpusFile, r: Result, work: Path) -> Signed | None:
        data = await asyncio.to_thread(f.path.read_bytes)
        signers = f.signers(self.args.signers)
        status, body = await self.create(r, f, data, signers)
        sender_placed = False
        if why := needs_placement(status, body):
            # No room for a stamp on a file signed elsewhere: the gateway asks the sender for a place. A
            # valid file not signed as it is; once more with a sender's box per signer (accepted so: a remark).
            r.upload, r.needs_placement = "422 needs-placement", why
            r.fail("needs-placement", f"create → 422 validation_failed, {why}"[:300])
            status, body = await self.create(r, f, data, sender_boxes(signers))
            r.placed_retry = "201" if status == 201 else f"{status} {problem_code(body)}"
            if status != 201:
                r.notes.append(f"(placement retry with sender boxes → {status} {body[:200]!r})")
                return None
            r.upload, sender_placed = "422 → placed 201", True
        elif status != 201:
            code = problem_code(body)
            r.upload = f"{status} {code}"
            if f.must_accept and code == "pdf_certified" and "signs cleanly" in f.observed:
                # Decided (docs/pdf-intake.md): a certification that allows form filling only is kept
                # intact; the 2026-12-01 gateway signed such files and broke the author's certification.
                r.notes.append("refused as pdf_certified: the author's certification allows form filling only")
            elif f.must_accept:
                why = "signed cleanly on 2026-12-01" if "signs cleanly" in f.observed else "a valid PDF"
                r.fail("valid-refused", f"refused ({status} {code}) but must be accepted ({why})")
            if 400 <= status < 500 and not (code.startswith("pdf_") or code == "document_too_large"):
                # not a verdict on the PDF: this script's request or the tenant is wrong
                r.notes.append(f"HARNESS ERROR upload → {status} {code}: {body[:200]!r}")
                r.failures.add("harness-error")
            elif status < 400:
                r.fail("accepted-then-unsignable", f"upload answered {status}, not 201")
            return None
        if not sender_placed:
            r.upload = "201"
        r.accepted = True
        env = json.loads(body)
        r.envelope_id = env_id = env["id"]
        by_email = {s["email"].lower(): s for s in env["signers"]}
        fields = [f"Signature-{by_email[s['email'].lower()]['id']}" for s in signers]

        for order in sorted({s["order"] for s in signers}):
            for s in (s for s in signers if s["order"] == order):
                ok = await self.sign_one(r, s)
                if not ok:
                    return None
        # completed?
        for _ in range(60):
            status, body, _ = await self.call(r, "GET", f"/v1/envelopes/{env_id}")
            env = json.loads(body) if status == 200 else env
            if env.get("status") == "completed":
                break
            await asyncio.sleep(0.5)
        else:
            r.fail("accepted-then-unsignable", f"envelope is {env.get('status')!r}, not completed, after signing")
            return None
        status, body, ctype = await self.call(r, "GET", f"/v1/envelopes/{env_id}/download")
        r.completed = True
        if status != 200 or b"%PDF-" not in body[:1024]:
            r.fail("accepted-then-unsignable", f"download → {status} {ctype}")
            return None
        signed = work / "signed.pdf"
        await asyncio.to_thread(signed.write_bytes, body)
        if self.args.keep:
            await asyncio.to_thread(_keep, Path(self.args.keep) / f"{f.path.stem}.signed.pdf", body)
        base, note = await self.prepared_base(r, env, data, work)
        events = await self.audit_events(r, env_id)
        return Signed(signed, fields, env, base, note, events, sender_placed)

    async def audit_events(self, r: Result, env_id: str) -> list[dict[str, Any]] | None:
        status, body, _ = await self.call(r, "GET", f"/v1/envelopes/{env_id}/audit",
                                          headers={"Accept": "application/json"})
        try:
            events = json.loads(body)["events"] if status == 200 else None
        except (ValueError, KeyError, TypeError):
            events = None
        if not isinstance(events, list):
            r.notes.append(f"(audit trail unreadable: {status} {problem_code(body)})")
            return None
        return events

    async def sign_one(self, r: Result, s: dict[str, Any]) -> bool:
        token = await self.outbox.link(s["email"], self.args.timeout)
        if token is None:
            r.signers.append("no-mail")
            r.fail("accepted-then-unsignable", f"no invitation e-mail for {s['email']}")
            return False
        status, body, _ = await self.call(r, "POST", f"/api/sign/{token}/code", auth=False, json={})
        if status != 202:
            r.signers.append(f"code:{status}")
            r.fail("accepted-then-unsignable", f"SMS code request → {status} {problem_code(body)}")
            return False
        code = await self.outbox.code(s["phone"], self.args.timeout)
        if code is None:
            r.signers.append("no-sms")
            r.fail("accepted-then-unsignable", f"no SMS for {s['phone']}")
            return False
        status, body, _ = await self.call(r, "POST", f"/api/sign/{token}/sign", auth=False,
                                          json={"code": code, "agree": True})
        r.signers.append(str(status))
        if status != 200:
            r.fail("accepted-then-unsignable", f"sign → {status} {problem_code(body)}")
            return False
        return True

    async def prepared_base(self, r: Result, env: dict[str, Any], data: bytes, work: Path) -> tuple[Path | None, str]:
        """What the signature was added to: the upload, or the gateway's prepared (repaired) copy."""
        base = work / "base.pdf"
        doc = (env.get("documents") or [{}])[0]
        upload_sha = hashlib.sha256(data).hexdigest()
        if doc.get("sha256") and doc["sha256"] != upload_sha:
            r.notes.append(f"documents[].sha256 {doc['sha256'][:12]}… is not the upload's {upload_sha[:12]}…")
        prepared = doc.get("prepared_sha256")
        if prepared and prepared != upload_sha:
            status, body, _ = await self.call(
                r, "GET", f"/v1/envelopes/{env['id']}/documents/{doc.get('id')}?version=prepared")
            if status == 200 and hashlib.sha256(body).hexdigest() == prepared:
                await asyncio.to_thread(base.write_bytes, body)
                r.notes.append(f"(signed the prepared copy {prepared[:12]}…)")
                return base, ""
            return None, f"prepared copy {prepared[:12]}… not downloadable ({status}): prefix/object checks skipped"
        await asyncio.to_thread(base.write_bytes, data)
        return base, ""

    # ------------------------------------------------------------------------- checks

    async def checks(self, f: CorpusFile, r: Result, work: Path, result: Signed) -> None:
        orig, signed, fields, base = f.path, result.path, result.fields, result.base
        extra = [*SIGNER_NAMES, result.envelope["id"]]

        (pages0, pages1), (sig0, sig1), (txt0, txt1), (q0, q1) = await asyncio.gather(
            asyncio.gather(page_count(orig), page_count(signed)),
            asyncio.gather(pdfsig(orig), pdfsig(signed)),
            asyncio.gather(pdftotext_pages(orig), pdftotext_pages(signed)),
            asyncio.gather(qpdf_check(orig), qpdf_check(signed)),
        )
        base_sig_fields = [s.field for s in sig0] if isinstance(sig0, list) else []
        fields = our_fields(fields, sig0, sig1)
        upload_sha = await asyncio.to_thread(lambda: hashlib.sha256(orig.read_bytes()).hexdigest())
        added, claim_problems = signature_page_claim(result.envelope, result.events, upload_sha)
        repaired = result.events is None or bool(result.events_of("document.normalised"))
        # A signature page alone: the gateway's copy is the upload rewritten by qpdf plus one page
        prepared = ((result.envelope.get("documents") or [{}])[0]).get("prepared_sha256")
        compare_copy = added is not None and not repaired and base is not None and prepared not in (None, upload_sha)
        objects, hanko, same = await asyncio.gather(
            self.pool.call("objects", signed=str(signed), base=str(base) if base else None, fields=fields),
            self.pool.call("pyhanko", signed=str(signed), base=str(orig), ca=str(self.gateway.ca_path),
                           base_fields=base_sig_fields, fields=fields),
            self.pool.call("same_pages", base=str(orig), prepared=str(base)) if compare_copy else _none(),
        )
        geometry: dict[int, dict[str, Any]] = {}
        if objects.get("ok"):
            geometry = {int(k): v for k, v in objects["result"]["geometry"].items()}

        # page count
        if pages0 is None:
            r.check("pages", None, "pdfinfo cannot read the upload")
        elif added is None:
            r.check("pages", pages1 == pages0, f"{pages0} → {pages1}")
        else:
            await self.check_signature_page(r, f, result, fields, pages0, pages1, added, claim_problems, geometry)

        # pdfsig
        self.check_pdfsig(r, sig0, sig1, fields)

        # pyHanko
        self.check_pyhanko(r, hanko, fields)

        # text
        if isinstance(txt0, str):
            r.check("text", None, f"pdftotext on the upload: {txt0}")
        elif pages0 is not None and len(txt0) != pages0:  # poppler skips pages it cannot parse
            r.check("text", None, f"pdftotext reads {len(txt0)} of the upload's {pages0} pages")
        elif isinstance(txt1, str):
            r.check("text", False, f"pdftotext on the result: {txt1}")
        else:
            added_text = None
            if added is not None and added == len(txt0) + 1 == len(txt1):  # pages 1..N against the upload
                txt1, added_text = txt1[:-1], txt1[-1]
            diff, remark = await asyncio.to_thread(compare_text, txt0, txt1, extra)
            if diff is None and added_text is not None:
                heading = SIGNATURE_PAGE_HEADING.get(LANGUAGE, SIGNATURE_PAGE_HEADING["en"])
                flat = " ".join(added_text.split())
                missing = [what for what, there in (
                    (f"the heading {heading!r}", heading in flat),
                    (f"the envelope ID {result.envelope['id']}", result.envelope["id"] in "".join(flat.split())),
                ) if not there]
                if missing:
                    diff = f"signature page {added} lacks {' and '.join(missing)} ({flat[:80]!r})"
            r.check("text", diff is None, diff or "")
            if remark:
                r.notes.append(f"(text: {remark})")

        # render
        rendered = await self.check_render(r, orig, signed, work, pages0, geometry, result.base,
                                           repaired=repaired)
        await self.check_stamps(r, f, result, fields, pages0, objects, geometry, rendered, work)

        # qpdf --check
        (rc0, m0), (rc1, m1) = q0, q1
        if rc1 is None:
            r.check("qpdf", False, "qpdf --check timed out on the result")
        else:
            new = sorted(m1 - m0)
            bad = (rc1 == 2 and rc0 != 2) or bool(new)
            r.check("qpdf", not bad, f"exit {rc0} → {rc1}; new: {'; '.join(new)[:200]}")

        # objects + byte prefix, form values
        self.check_objects(r, objects, result, same if compare_copy else None)
        if added is not None and repaired and base is not None and base != orig:
            r.notes.append("(objects: a repaired copy with a signature page: its pages are compared with the "
                           "upload by text and rendering only)")

    async def check_signature_page(self, r: Result, f: CorpusFile, result: Signed, fields: list[str], pages0: int,
                                   pages1: int | None, added: int, claim_problems: list[str],
                                   geometry: dict[int, dict[str, Any]]) -> None:
        """The result has exactly one page more than the upload, and that page is the signature page the
        audit trail and the API speak of, with every stamp the API puts there (and no other)."""
        problems = list(claim_problems)
        if added != pages0 + 1:
            problems.append(f"the API says page {added}, the upload has {pages0} pages")
        if pages1 != pages0 + 1:
            problems.append(f"{pages0} → {pages1} pages")
        if result.base is None:
            problems.append(f"the gateway's copy cannot be downloaded ({result.base_note})")
        elif (prepared := await page_count(result.base)) != pages0 + 1:
            problems.append(f"the gateway's copy has {prepared} pages")
        by_email = {s["email"].lower(): s for s in result.envelope.get("signers") or []}
        for fl, s in zip(fields, f.signers(self.args.signers), strict=True):
            api = (by_email.get(s["email"].lower(), {}).get("fields") or [{}])[0]
            on = sorted(i + 1 for i, g in geometry.items() if fl in (g.get("fields") or []))
            if api.get("source") == "signature_page" and on != [added]:
                problems.append(f"{s['name']}: stamp on page(s) {on}, the API says the signature page {added}")
            elif api.get("source") != "signature_page" and added in on:
                problems.append(f"{s['name']}: stamp on the signature page, the API says {api.get('source')!r}")
        r.check("pages", not problems, "signature page: " + "; ".join(problems)[:300])
        if not problems:
            r.notes.append(f"(pages: {pages0} → {pages1}, the signature page {added} of the audit trail and the API)")

    def check_pdfsig(self, r: Result, sig0: list[PdfSig] | str, sig1: list[PdfSig] | str, fields: list[str]) -> None:
        if isinstance(sig1, str):
            r.check("sig", False, f"pdfsig on the result: {sig1}")
            return
        problems = []
        ours = {s.field: s for s in sig1 if s.field in fields}
        for name in fields:
            s = ours.get(name)
            if s is None:
                problems.append(f"{name} missing")
            elif s.validation != "Signature is Valid.":
                problems.append(f"ours {name[:20]}…: {s.validation}")
        before = sig0 if isinstance(sig0, list) else []
        after_by_name: dict[str, list[PdfSig]] = {}
        for s in sig1:
            after_by_name.setdefault(s.field, []).append(s)
        used: Counter[str] = Counter()
        for s in before:
            match = after_by_name.get(s.field, [])
            i = used[s.field]
            used[s.field] += 1
            now = match[i] if i < len(match) else None
            if s.validation == "Signature is Valid." and (now is None or now.validation != s.validation):
                problems.append(f"earlier {s.field!r} was valid, now {now.validation if now else 'missing'}")
            elif now is not None and now.validation != s.validation and s.field not in fields:
                # not valid before either (an empty field we signed is no remark): a remark
                r.notes.append(f"(sig: earlier {s.field!r}: {s.validation!r} → {now.validation!r})")
        known = {s.field for s in before} | set(fields)
        for s in sig1:
            if s.field not in known and s.validation != "Signature is Valid." and not (
                    "not yet been verified" in s.validation and s.kind in ("unknown", "ETSI.RFC3161")):
                problems.append(f"new {s.field!r} ({s.kind}): {s.validation}")
        if isinstance(sig0, str):
            r.notes.append(f"(pdfsig cannot read the upload: {sig0})")
        r.check("sig", not problems, "; ".join(problems)[:300])

    def check_pyhanko(self, r: Result, hanko: dict[str, Any], fields: list[str]) -> None:
        if not hanko.get("ok"):
            r.check("hanko", False, f"validator: {hanko.get('error')}")
            return
        res = hanko["result"]
        if res.get("via") != "pades.validate":
            r.notes.append(f"(validated with {res.get('via')})")
        by_field = {s["field"]: s for s in res["signatures"]}
        problems = []
        if res.get("crash"):
            problems.append(f"pades.validate raised {res['crash']}")
        good_levels = {"NONE", "LTA_UPDATES", "FORM_FILLING", "ANNOTATIONS"}
        for name in fields:
            s = by_field.get(name)
            if s is None:
                problems.append(f"{name[:24]}… not found")
            elif not (s["bottom_line"] or (s["intact"] and s["valid"] and s["modification_level"] in good_levels)):
                problems.append(f"{name[:24]}…: " + (s["error"] if s.get("error") else
                                f"intact={s['intact']} valid={s['valid']} trusted={s['trusted']} "
                                f"mod={s['modification_level']}"))
        for t in res["timestamps"]:
            if not (t["intact"] and t["valid"]):
                problems.append(f"doc timestamp {t['field']!r}: intact={t['intact']} valid={t['valid']}"
                                + (f" {t['error']}" if t.get("error") else ""))
        r.check("hanko", not problems, "; ".join(problems)[:400])

    async def check_render(self, r: Result, orig: Path, signed: Path, work: Path, pages: int | None,
                           geometry: dict[int, dict[str, Any]], base: Path | None = None,
                           repaired: bool = True) -> dict[int, Path] | None:
        """Compares the renderings (pages 1..``pages``, those of the upload); returns the result's (page
        number → PGM) when it was rendered."""
        ranges = render_ranges(pages, geometry)
        if base is not None and base != orig and not repaired and not await asyncio.to_thread(same_bytes, base, orig):
            # The gateway's copy with the signature page, not repaired: the upload's pages as they were.
            upload, copy = await asyncio.gather(render(orig, work / "png-u", ranges),
                                                render(base, work / "png-p", ranges))
            if isinstance(upload, dict) and isinstance(copy, dict):
                diffs = await asyncio.to_thread(copy_render_changes, upload, copy)
                if diffs:
                    r.check("render", False, "the gateway's copy with the signature page: " + "; ".join(diffs[:3]))
                    return None
            orig = base
        elif base is not None and base != orig and not await asyncio.to_thread(same_bytes, base, orig):
            # A repaired upload: the signatures must change nothing of the repaired copy; the repair
            # itself may make poppler draw a little differently (a form state it skipped in the broken
            # file), within RENDER_MAX_DIFF_SHARE of a page, which is reported.
            upload, repaired = await asyncio.gather(render(orig, work / "png-u", ranges),
                                                    render(base, work / "png-p", ranges))
            if isinstance(upload, dict) and isinstance(repaired, dict):
                changed = await asyncio.to_thread(repair_render_changes, upload, repaired)
                if changed is not None and changed[1]:
                    r.check("render", False, f"the repair changed the rendering: {changed[0]}")
                    return None
                if changed is not None:
                    r.notes.append(f"(render: the repair changed {changed[0]})")
            orig = base
        before, after = await asyncio.gather(render(orig, work / "png0", ranges), render(signed, work / "png1", ranges))
        if isinstance(before, str) or not before:
            r.check("render", None, f"pdftoppm on the upload: {before or 'no pages'}")
            return after if isinstance(after, dict) else None
        if isinstance(after, str):
            r.check("render", False, f"pdftoppm on the result: {after}")
            return None

        def compare() -> tuple[list[str], list[int]]:
            diffs, unreadable = [], []
            for page, p0 in sorted(before.items()):
                b0 = p0.read_bytes()
                w, h, _ = parse_pgm(b0)
                if w * h <= 4:  # poppler found no page box in the upload
                    unreadable.append(page)
                    continue
                p1 = after.get(page)
                if p1 is None:
                    diffs.append(f"page {page} not rendered")
                    continue
                if d := compare_pgm(b0, p1.read_bytes(), geometry.get(page - 1)):
                    diffs.append(f"page {page}: {d}")
            return diffs, unreadable

        diffs, unreadable = await asyncio.to_thread(compare)
        if unreadable and len(unreadable) == len(before):
            r.check("render", None, "poppler renders no page of the upload")
            return after
        if unreadable:
            r.notes.append(f"(render: poppler renders no page box for page(s) {unreadable} of the upload)")
        r.check("render", not diffs, "; ".join(diffs[:3]) + (f" (+{len(diffs) - 3} pages)" if len(diffs) > 3 else ""))
        return after

    async def check_stamps(self, r: Result, f: CorpusFile, result: Signed, fields: list[str], pages0: int | None,
                           objects: dict[str, Any], geometry: dict[int, dict[str, Any]],
                           rendered: dict[int, Path] | None, work: Path) -> None:
        """Every signer's stamp: inside the displayed page, upright, readable, over none of the upload's
        words (pages the gateway added excepted), light on a page painted black (``stamp_problems``,
        ``stamp_median``)."""
        if not objects.get("ok") or objects["result"].get("signed_error"):
            r.checks["stamp"] = "n/a"
            r.notes.append("(stamp n/a: pikepdf cannot read the result's widgets)")
            return
        signer_of = {fl: s["name"] for fl, s in zip(fields, f.signers(self.args.signers), strict=True)}
        envelope_id = result.envelope["id"]
        stamps = {i: page_stamps(i, g, signer_of) for i, g in sorted(geometry.items())}
        problems: list[tuple[str, str]] = [
            ("stamp-unreadable", f"{signer_of[fl]}: no widget with a /Rect for {fl[:24]}…")
            for fl in fields if not any(s.field == fl for ss in stamps.values() for s in ss)]

        async def upload_words(i: int) -> list[Word] | str | None:
            return await pdftotext_words(f.path, i + 1) if pages0 is not None and i < pages0 else None

        pages = sorted(stamps)
        signed_words, upload = await asyncio.gather(
            asyncio.gather(*(pdftotext_words(result.path, i + 1) for i in pages)),
            asyncio.gather(*(upload_words(i) for i in pages)))
        unchecked: set[int] = set()
        for i, words, before in zip(pages, signed_words, upload, strict=True):
            if isinstance(words, str) and (isinstance(before, str) or pages0 is None):
                r.notes.append(f"(stamp n/a: poppler cannot read page {i + 1} of the upload either)")
                unchecked.add(i)
                continue
            if isinstance(words, str):
                problems.append(("stamp-unreadable", f"p{i + 1}: pdftotext -bbox on the result: {words}"))
                continue
            if isinstance(before, str):
                r.notes.append(f"(stamp: pdftotext -bbox, upload page {i + 1}: {before}; covered text unchecked)")
                before = None
            elif before is None and pages0 is None:
                r.notes.append(f"(stamp: the upload's page count is unknown; covered text on page {i + 1} unchecked)")
            problems += stamp_problems(stamps[i], geometry[i], words, before, envelope_id, signer_of.values(),
                                       result.sender_placed)

        # 5. opaque background: the page painted black under the annotations, rendered like check_render does
        dark_pages: dict[int, Path] | str = "-"
        if pages:
            dark = await self.pool.call("darken", signed=str(result.path), out=str(work / "dark.pdf"), pages=pages)
            if dark.get("ok"):
                dark_pages = await render(work / "dark.pdf", work / "png-dark", [(i + 1, i + 1) for i in pages])
            else:
                dark_pages = f"pikepdf: {dark.get('error')}"
        if isinstance(dark_pages, str) and pages:
            r.notes.append(f"(stamp: no darkened copy ({dark_pages[:80]}); background judged on the page as it is)")
            dark_pages = rendered or {}
        for i in (i for i in pages if i not in unchecked):
            pgm = dark_pages.get(i + 1) if isinstance(dark_pages, dict) else None
            for s in stamps[i]:
                median = await asyncio.to_thread(stamp_median, pgm.read_bytes(), geometry[i], s.rect) if pgm else None
                if median is None:
                    r.notes.append(f"(stamp: p{i + 1} {s.signer}: no pixel of it rendered, background unchecked)")
                elif median <= STAMP_LIGHT_MEDIAN:
                    problems.append(("stamp-no-background", f"p{i + 1} {s.signer}: median grey {median} of 255 inside "
                                     f"{_fmt(s.box)} on the page painted black"))

        gone = [k for k, (c, _) in enumerate(problems) if c in ("stamp-unreadable", "stamp-no-background")]
        first = signer_of[fields[0]] if fields else None  # the file's first signature has a mirror: no excuse
        first_signature = not await asyncio.to_thread(lambda: b"/ByteRange" in f.path.read_bytes())
        if (objects["result"].get("need_appearances") and gone and len(gone) == len(problems)
                and not (first_signature and any(f" {first}:" in f" {n}" for _, n in problems))):
            # poppler 22 redraws every widget of a /NeedAppearances form from its value, signatures
            # included (blank); poppler 23+ keeps signature appearances. The same checks on a copy with
            # the flag off show whether our stamps are right: then it is that viewer's, a remark.
            again = Result(file=r.file)
            flag_off = await self.pool.call("flag_off", signed=str(result.path), out=str(work / "flag-off.pdf"))
            if flag_off.get("ok"):
                (work / "flag-off").mkdir(exist_ok=True)
                await self.check_stamps(again, f, dataclasses.replace(result, path=work / "flag-off.pdf"), fields,
                                        pages0, {**objects, "result": {**objects["result"], "need_appearances": False}},
                                        geometry, None, work / "flag-off")
            if flag_off.get("ok") and not again.failures:
                r.notes.append("(stamp: a later signer's stamp on a /NeedAppearances form is drawn blank by this "
                               "poppler (22), which redraws signature widgets there; with the flag off every check "
                               "passes)")
                problems = []
            else:
                c, note = problems[gone[0]]
                problems[gone[0]] = (c, f"{note} (/NeedAppearances true; wrong with the flag off too)")
        if remarks := [n for c, n in problems if c == SENDER_OVER_TEXT]:
            r.notes.append(f"(stamp: the sender's box covers words: {'; '.join(remarks)[:200]})")
            problems = [(c, n) for c, n in problems if c != SENDER_OVER_TEXT]
        r.checks["stamp"] = "fail" if problems else "n/a" if pages and len(unchecked) == len(pages) else "ok"
        for cls in STAMP_CLASSES:
            if notes := [n for c, n in problems if c == cls]:
                r.fail(cls, "; ".join(dict.fromkeys(notes))[:400])

    def check_objects(self, r: Result, objects: dict[str, Any], result: Signed,
                      same: dict[str, Any] | None = None) -> None:
        """The result against what it was signed on (prefix, objects, form values); with ``same``
        (``_op_same_pages``), also the gateway's signature-page copy against the upload."""
        base = result.base
        if not objects.get("ok"):
            r.check("objects", False, f"pikepdf: {objects.get('error')}")
            r.check("form", None, "pikepdf failed")
            return
        res = objects["result"]
        if res.get("signed_error"):
            r.notes.append(f"({res['signed_error']})")
        if base is None:
            r.check("objects", None, result.base_note)
            r.check("form", None, result.base_note)
            return
        problems = []
        if not res.get("prefix_ok"):
            problems.append("the result does not start with the uploaded bytes "
                            f"(first difference at byte {res.get('first_difference')})")
        changed = res.get("overwritten", [])
        if changed:
            problems.append(f"{len(changed)} of {res.get('base_objects')} objects changed: " + ", ".join(changed[:4]))
        if same is not None and not same.get("ok"):
            problems.append(f"the signature-page copy against the upload: pikepdf: {same.get('error')}")
        elif same is not None:
            s = same["result"]
            if s.get("differ"):
                problems.append(f"the signature-page copy changed page(s) {s['differ'][:8]} of the upload "
                                f"(objects of {s['pages']} pages compared)")
            if s.get("acroform_same") is False:
                problems.append("the signature-page copy changed the upload's /AcroForm")
            if s.get("prepared_pages") != s.get("pages", 0) + 1:
                problems.append(f"the signature-page copy has {s.get('prepared_pages')} pages, "
                                f"the upload {s.get('pages')}")
            if s.get("unchecked"):
                r.notes.append(f"(objects: the signature-page copy against the upload: {s['unchecked']})")
        r.check("objects", not problems, "; ".join(problems)[:400])
        form = res.get("form") or {}
        if form.get("error"):
            r.check("form", None, f"form tree unreadable: {form['error']}")
        elif not form.get("filled"):
            r.check("form", None)
        else:
            lost = form.get("lost", [])
            r.check("form", not lost,
                    f"{len(lost)} of {form['filled']} filled fields no longer shown "
                    f"(NeedAppearances {form.get('base_need_appearances')} → {form.get('signed_need_appearances')}): "
                    + ", ".join(lost[:5]))


# ----------------------------------------------------------------------------- output


def short(name: str, width: int = 52) -> str:
    for prefix in ("pyhanko__internal__common-test-utils__src__pyhanko_testing_commons__test_data__data__pdf__",
                   "dss__dss-pades__src__test__resources__", "qpdf__qpdf__qtest__qpdf__", "pdfjs__test__pdfs__"):
        if name.startswith(prefix):
            name = prefix.split("__")[0] + ":" + name[len(prefix):]
            break
    return name if len(name) <= width else "…" + name[-(width - 1):]


HEADER = (f"{'file':52} {'class':17} {'upload':22} {'signers':12} "
          + " ".join(f"{c:>7}" for c in CHECKS) + "   time")


def row(r: Result) -> str:
    marks = " ".join(f"{MARK[r.checks[c]]:>7}" for c in CHECKS)
    line = (f"{short(r.file.name):52} {r.file.short_class[:17]:17} {r.upload[:22]:22} {','.join(r.signers)[:12]:12} "
            f"{marks} {r.seconds:5.1f}s")
    if r.failures:
        line += "   ✗ " + ", ".join(sorted(r.failures))
    shown = ("[", "(text:", "(sig:", "(render:", "(stamp", "(signed the prepared", "HARNESS", "refused as", "(pages:",
             "(placement", "(objects:", "(audit")
    return line + "".join(f"\n      {n}" for n in r.notes if n.startswith(shown))


def summary(results: list[Result], elapsed: float, selected: int) -> str:
    outcomes = Counter(r.outcome for r in results)
    refused = Counter(r.upload for r in results if r.outcome == "refused (ok)")
    fails = Counter(c for r in results for c in r.failures)
    lines = ["## Corpus run", "",
             f"{len(results)} of {selected} files in {elapsed / 60:.1f} min ({elapsed:.0f} s), "
             f"{sum(len(r.signers) for r in results)} signatures requested. Checks of every signed result: "
             "`pdfsig -nocert` (ours valid, earlier valid ones still valid), pyHanko (`pades.validate`, dev CA "
             "as root), `pdftotext` words per page without the stamp text, `pdftoppm -r 30 -gray` outside the "
             f"stamp boxes (at most {RENDER_MAX_DIFF_SHARE:.1%} of the pixels may differ, by at most "
             f"{RENDER_MAX_LEVEL_DIFF} levels), `pdfinfo` pages, `qpdf --check`, pikepdf (the upload is a byte "
             "prefix, no object of it overwritten, filled form fields still shown), every stamp (`pdftotext -bbox`, "
             "`pdftoppm`): inside the displayed page, upright, readable, over no word of the upload, light on a page "
             "painted black.", "",
             "| outcome | files |", "|---|---:|"]
    for k in ("signed, all checks pass", "refused (ok)", "FAILED"):
        lines.append(f"| {k} | {outcomes.get(k, 0)} |")
    for k, v in sorted(refused.items()):
        lines.append(f"| &nbsp;&nbsp;refused (ok): {k} | {v} |")
    lines += ["", "| failure class | files |", "|---|---:|"]
    lines += [f"| `{c}` | {fails.get(c, 0)} |" for c in (*FAILURE_CLASSES, "harness-error") if c in FAILURE_CLASSES
              or fails.get(c)]
    by_class: dict[str, list[Result]] = {}
    for r in results:
        by_class.setdefault(r.file.short_class, []).append(r)
    lines += ["", "| class in SOURCES.csv | files | pass | refused (ok) | failed | failure classes |",
              "|---|---:|---:|---:|---:|---|"]
    for k, rs in sorted(by_class.items()):
        c = Counter(r.outcome for r in rs)
        fc = Counter(x for r in rs for x in r.failures)
        lines.append(f"| {k} | {len(rs)} | {c.get('signed, all checks pass', 0)} | {c.get('refused (ok)', 0)} | "
                     f"{c.get('FAILED', 0)} | {', '.join(f'{x} {n}' for x, n in sorted(fc.items()))} |")
    if placed := [r for r in results if r.needs_placement]:
        lines += ["", "Needs a place from the sender (`needs-placement`: 422 validation_failed, \"signed elsewhere\", "
                  f"no room for a stamp on any page), retried once with a sender's box per signer on page 1 "
                  f"({SENDER_BOX['width']}×{SENDER_BOX['height']} pt at x {SENDER_BOX['x']}, y {SENDER_BOX_TOP} + "
                  f"{SENDER_BOX_STEP} per signer):", ""]
        for r in sorted(placed, key=lambda r: r.file.name):
            lines.append(f"- `{r.file.name}` ({r.file.short_class}): {r.needs_placement.split(':')[0]}; "
                         f"{r.retry_outcome}")
    if pages := [r for r in results if any(n.startswith("(pages: ") for n in r.notes)]:
        lines += ["", f"Signature page appended by the gateway (audit event and API agree): {len(pages)} files."]
    failed = [r for r in results if r.failures]
    if failed:
        lines += ["", "Failed files:", ""]
        for r in sorted(failed, key=lambda r: r.file.name):
            lines.append(f"- `{r.file.name}` ({r.file.short_class}): "
                         + "; ".join(n for n in r.notes if n.startswith("[") or "HARNESS" in n)[:600])
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------- main


async def main_async(args: argparse.Namespace) -> int:
    import aiohttp

    corpus = load_corpus(Path(args.corpus))
    files = [f for f in corpus if not args.files or any(s in f.name for s in args.files)]
    if args.limit:
        files = files[: args.limit]
    if not files:
        print("no file selected", file=sys.stderr)
        return 2
    for tool in ("pdfsig", "pdftotext", "pdftoppm", "pdfinfo", "qpdf"):
        if shutil.which(tool) is None:
            print(f"{tool} is missing: apt-get install poppler-utils qpdf (.ci/ensure-pdf-tools)", file=sys.stderr)
            return 2

    scratch = Path(tempfile.mkdtemp(prefix="esign-corpus-"))
    gateway = Gateway(scratch / "data")
    gateway.data_dir.mkdir()
    atexit.register(gateway.stop)  # also when the loop is torn down by a signal
    pool = WorkerPool(max(1, args.jobs))
    results: list[Result] = []
    t0 = time.perf_counter()
    watcher: asyncio.Task[None] | None = None
    try:
        await asyncio.to_thread(gateway.start)
        await pool.start()
        outbox = Outbox(gateway.data_dir / "outbox")
        watcher = asyncio.create_task(outbox.watch())
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None)) as session:
            for _ in range(600):
                if not gateway.alive():
                    raise RuntimeError(f"the gateway exited at start:\n{gateway.log_tail(20)}")
                try:
                    async with session.get(f"{gateway.base}/healthz", timeout=aiohttp.ClientTimeout(total=5)) as resp:
                        if resp.status == 200:
                            break
                except (aiohttp.ClientError, TimeoutError):
                    pass
                await asyncio.sleep(0.1)
            else:
                raise RuntimeError(f"the gateway did not answer /healthz within 60 s:\n{gateway.log_tail(20)}")
            print(f"gateway {gateway.base} (pid {gateway.proc.pid if gateway.proc else '?'}), data {gateway.data_dir}; "
                  f"{len(files)} files, {args.jobs} at a time", flush=True)
            print(HEADER, flush=True)
            http = Http(session, gateway.base, gateway.api_key, args.timeout)
            sem = asyncio.Semaphore(max(1, args.jobs))

            async def one(f: CorpusFile) -> Result:
                async with sem:
                    if not gateway.alive():
                        r = Result(f)
                        r.fail("no-response", "the gateway process is gone")
                        return r
                    return await Runner(args, gateway, http, outbox, pool, scratch).run(f)

            for fut in asyncio.as_completed([one(f) for f in files]):
                r = await fut
                results.append(r)
                print(row(r), flush=True)
    finally:
        if watcher is not None:
            watcher.cancel()
        await pool.close()
        await asyncio.to_thread(gateway.stop)
        if not args.keep_data:
            shutil.rmtree(scratch, ignore_errors=True)
        else:
            print(f"data kept in {scratch}", file=sys.stderr)
    elapsed = time.perf_counter() - t0
    results.sort(key=lambda r: r.file.index)
    text = summary(results, elapsed, len(files))
    print()
    print(text)
    if args.out:
        await asyncio.to_thread(Path(args.out).write_text, text, encoding="utf-8")
    return 1 if any(r.failures for r in results) else 0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("--corpus", default=str(DEFAULT_CORPUS), help="folder with files/ and SOURCES.csv")
    ap.add_argument("--files", nargs="+", metavar="SUBSTR", help="only files whose name contains one of these")
    ap.add_argument("--jobs", type=int, default=2, help="files in flight at once (default 2)")
    ap.add_argument("--limit", type=int, help="at most N files")
    ap.add_argument("--keep", metavar="DIR", help="keep the signed results in DIR")
    ap.add_argument("--keep-data", action="store_true", help="keep the gateway's data directory (logs, outbox)")
    ap.add_argument("--out", metavar="FILE", help="also write the summary as Markdown")
    ap.add_argument("--timeout", type=float, default=120.0, help="seconds per HTTP request / outbox wait")
    ap.add_argument("--signers", type=int, choices=(1, 2, 3), help="signers for every file (default: 1; 3 for every "
                    "tenth, alternately sequential and parallel)")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        worker_main()
        return
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # SIGTERM stops the gateway like Ctrl-C
    try:
        sys.exit(asyncio.run(main_async(args)))
    except RuntimeError as exc:
        print(f"corpus: {exc}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)


if __name__ == "__main__":
    main()
