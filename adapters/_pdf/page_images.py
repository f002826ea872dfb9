"""A document's pages as PNG images, as a viewer shows them (runs in a page-image worker process).

The page is shown in the same frame the stamp placements are measured in (:mod:`.geometry`: the
CropBox clipped to the MediaBox, turned by ``/Rotate``), so a box from ``StampPlacement`` lands on
the image at ``x / width`` of its width. Form fields and annotations are drawn (a filled-in form
reads as it will be signed). The image is at most :data:`MAX_PIXELS` on its longer side whatever
width is asked (a page 1 pt wide and 10 m tall stays a small picture), and each call has a CPU
budget in its worker (:func:`worker_init`).
"""

from __future__ import annotations

import io
import resource
import signal
from typing import Any

import pypdfium2 as pdfium
from PIL import Image, ImageChops

from .geometry import PageFrame

__all__ = ["MAX_PIXELS", "OverBudget", "page_sizes", "render_page", "worker_init"]

MAX_PIXELS = 4000
"""The longer side of any page image."""
_CPU_SECONDS = 20


class OverBudget(Exception):
    """The page needed more CPU than one render may use."""


def _on_sigxcpu(signum: int, frame: Any) -> None:
    raise OverBudget


def worker_init(memory_bytes: int, cpu_seconds: int = _CPU_SECONDS) -> None:
    """Bound the worker: an address-space limit, and SIGXCPU as an exception (each call sets its
    own soft CPU limit, see :func:`_budget`)."""
    global _CPU_SECONDS
    _CPU_SECONDS = cpu_seconds
    resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
    signal.signal(signal.SIGXCPU, _on_sigxcpu)


class _budget:
    def __enter__(self) -> None:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        self.hard = resource.getrlimit(resource.RLIMIT_CPU)[1]
        resource.setrlimit(resource.RLIMIT_CPU, (int(usage.ru_utime + usage.ru_stime) + _CPU_SECONDS + 1, self.hard))

    def __exit__(self, *exc: object) -> None:
        resource.setrlimit(resource.RLIMIT_CPU, (resource.RLIM_INFINITY, self.hard))


def _frame(page: pdfium.PdfPage) -> PageFrame:
    return PageFrame.of(page.get_mediabox(), page.get_cropbox(), page.get_rotation())


def _png(image: Image.Image) -> bytes:
    """Grey pages (most contracts) as 8-bit grey, colour ones in 256 colours: a tenth of RGB's size."""
    rgb = image.convert("RGB")
    r, g, b = rgb.split()
    grey = ImageChops.difference(r, g).getextrema()[1] <= 2 and ImageChops.difference(g, b).getextrema()[1] <= 2
    out = io.BytesIO()
    (rgb.convert("L") if grey else rgb.quantize(256, method=Image.Quantize.FASTOCTREE)).save(out, format="PNG")
    return out.getvalue()


def page_sizes(pdf: bytes) -> list[tuple[float, float]]:
    """Every page's displayed (width, height) in points."""
    with _budget():
        doc = pdfium.PdfDocument(pdf)
        try:
            sizes = []
            for index in range(len(doc)):
                page = doc[index]
                frame = _frame(page)
                sizes.append((round(frame.width, 2), round(frame.height, 2)))
                page.close()
            return sizes
        finally:
            doc.close()


def render_page(pdf: bytes, index: int, width: int) -> bytes:
    """Page ``index`` (0-based) as a PNG ``width`` pixels wide (less for a very tall page);
    ``IndexError`` if the document has no such page."""
    with _budget():
        doc = pdfium.PdfDocument(pdf)
        try:
            if not 0 <= index < len(doc):
                raise IndexError(index)
            doc.init_forms()
            page = doc[index]
            frame = _frame(page)
            page.set_cropbox(*frame.box)
            page.set_rotation(frame.rotate)
            scale = min(width / frame.width, MAX_PIXELS / frame.height, MAX_PIXELS / frame.width)
            bitmap = page.render(scale=scale, may_draw_forms=True, draw_annots=True)
            png = _png(bitmap.to_pil())
            page.close()
            return png
        finally:
            doc.close()
