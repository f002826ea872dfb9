"""Checks with tools the project did not write: poppler (pdfsig, pdfinfo, pdftotext) and qpdf."""

from __future__ import annotations

import re
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "PdfsigSignature", "Word", "pdfsig", "poppler_pages", "poppler_render", "poppler_text", "poppler_words",
    "qpdf_check",
]


@dataclass(frozen=True, slots=True)
class PdfsigSignature:
    field: str
    validation: str
    """``Signature is Valid.`` for a good signature (the certificate's trust is reported apart)."""

    @property
    def valid(self) -> bool:
        return self.validation == "Signature is Valid."


def _run(args: list[str], pdf: bytes, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    with tempfile.NamedTemporaryFile(suffix=".pdf") as f:
        f.write(pdf)
        f.flush()
        return subprocess.run([*args, f.name], capture_output=True, text=True, timeout=timeout, check=False)


def pdfsig(pdf: bytes) -> list[PdfsigSignature]:
    """Every signature poppler finds (document timestamps included), in file order."""
    out = _run(["pdfsig", "-nocert"], pdf).stdout
    signatures = []
    for block in re.split(r"^Signature #\d+:\s*$", out, flags=re.MULTILINE)[1:]:
        field = re.search(r"Signature Field Name: (.*)", block)
        validation = re.search(r"Signature Validation: (.*)", block)
        signatures.append(PdfsigSignature(field.group(1).strip() if field else "",
                                          validation.group(1).strip() if validation else ""))
    return signatures


def poppler_pages(pdf: bytes) -> int:
    out = _run(["pdfinfo"], pdf)
    match = re.search(r"^Pages:\s+(\d+)", out.stdout, flags=re.MULTILINE)
    return int(match.group(1)) if match else 0


def poppler_text(pdf: bytes) -> list[str]:
    """The text of every page (pdftotext, layout off), one string per page."""
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "in.pdf"
        src.write_bytes(pdf)
        subprocess.run(["pdftotext", str(src), str(Path(tmp) / "out.txt")], capture_output=True, timeout=60,
                       check=False)
        text = (Path(tmp) / "out.txt").read_text(errors="replace") if (Path(tmp) / "out.txt").exists() else ""
    return text.split("\f")[:-1] if text.endswith("\f") else text.split("\f")


def qpdf_check(pdf: bytes) -> tuple[int, str]:
    """qpdf's exit code (0 clean, 2 errors, 3 warnings) and its output."""
    out = _run(["qpdf", "--check"], pdf)
    return out.returncode, out.stdout + out.stderr


@dataclass(frozen=True, slots=True)
class Word:
    """A word as poppler's ``pdftotext -bbox -cropbox`` reports it: points from the top-left of the
    displayed page (its CropBox, turned by ``/Rotate``)."""

    text: str
    x0: float
    y0: float
    x1: float
    y1: float

    def inside(self, box: tuple[float, float, float, float], tolerance: float = 1.0) -> bool:
        x, y, w, h = box
        return (self.x0 >= x - tolerance and self.y0 >= y - tolerance
                and self.x1 <= x + w + tolerance and self.y1 <= y + h + tolerance)

    def meets(self, box: tuple[float, float, float, float], tolerance: float = 0.5) -> bool:
        x, y, w, h = box
        return not (self.x1 <= x + tolerance or self.x0 >= x + w - tolerance
                    or self.y1 <= y + tolerance or self.y0 >= y + h - tolerance)


def poppler_words(pdf: bytes, page: int) -> list[Word]:
    """The words of one page (1-based), with their boxes (see :class:`Word`)."""
    import html

    with tempfile.NamedTemporaryFile(suffix=".pdf") as f:
        f.write(pdf)
        f.flush()
        out = subprocess.run(["pdftotext", "-bbox", "-cropbox", "-f", str(page), "-l", str(page), f.name, "-"],
                             capture_output=True, text=True, timeout=60, check=False).stdout
    pattern = r'<word xMin="([\d.]+)" yMin="([\d.]+)" xMax="([\d.]+)" yMax="([\d.]+)">(.*?)</word>'
    return [Word(html.unescape(m.group(5)), *(float(m.group(i)) for i in range(1, 5)))
            for m in re.finditer(pattern, out)]


def poppler_render(pdf: bytes, page: int, dpi: int = 36) -> bytes:
    """One page as poppler renders it (``pdftoppm -gray``, CropBox), PGM bytes: equal bytes, equal page."""
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "in.pdf"
        src.write_bytes(pdf)
        subprocess.run(["pdftoppm", "-r", str(dpi), "-gray", "-cropbox", "-f", str(page), "-l", str(page),
                        str(src), str(Path(tmp) / "p")], capture_output=True, timeout=60, check=True)
        (rendered,) = Path(tmp).glob("p*.pgm")
        return rendered.read_bytes()
