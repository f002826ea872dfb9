"""Checks with tools the project did not write: poppler (pdfsig, pdfinfo, pdftotext) and qpdf."""

from __future__ import annotations

import re
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

__all__ = ["PdfsigSignature", "pdfsig", "poppler_pages", "poppler_text", "qpdf_check"]


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
