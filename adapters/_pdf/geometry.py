"""The displayed page: what a viewer shows, and how it maps onto the page's own coordinates.

A viewer shows a page's CropBox (clipped to its MediaBox), turned clockwise by ``/Rotate``. Every
placement the API speaks of is in that displayed page, in PDF points from its top-left corner, y
downwards (DigiSign's convention); PDF objects (a widget's ``/Rect``) are in the page's user space,
from the bottom-left, unrotated. :class:`PageFrame` converts between the two, and gives the
appearance matrix that turns a stamp upright on a rotated page.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = ["PageFrame", "Rect", "frame_of_page"]

Rect = tuple[float, float, float, float]
"""``(x, y, width, height)`` in the displayed page, from its top-left corner."""

DEFAULT_MEDIA_BOX = (0.0, 0.0, 612.0, 792.0)  # Letter: ISO 32000-1 §7.7.3.3's default


def _ordered(box: Any) -> tuple[float, float, float, float] | None:
    try:
        x0, y0, x1, y1 = (float(v.get_object() if hasattr(v, "get_object") else v) for v in list(box))
    except (TypeError, ValueError, AttributeError):
        return None
    left, right, bottom, top = min(x0, x1), max(x0, x1), min(y0, y1), max(y0, y1)
    if right - left < 1 or top - bottom < 1:
        return None
    return left, bottom, right, top


@dataclass(frozen=True, slots=True)
class PageFrame:
    box: tuple[float, float, float, float]
    """The visible area in user space (CropBox ∩ MediaBox): left, bottom, right, top."""
    rotate: int
    """Clockwise quarter turns in degrees: 0, 90, 180 or 270."""
    empty: bool = False
    """The CropBox lies outside the MediaBox: viewers disagree (poppler shows nothing, others the
    MediaBox), so nothing may rely on the page being seen. ``box`` is the MediaBox then."""

    @classmethod
    def of(cls, media: Any, crop: Any, rotate: Any) -> PageFrame:
        mbox = _ordered(media) or DEFAULT_MEDIA_BOX
        cbox = _ordered(crop) if crop is not None else None
        box, empty = mbox, False
        if cbox is not None:
            clipped = (max(mbox[0], cbox[0]), max(mbox[1], cbox[1]), min(mbox[2], cbox[2]), min(mbox[3], cbox[3]))
            if clipped[2] - clipped[0] >= 1 and clipped[3] - clipped[1] >= 1:
                box = clipped
            else:
                empty = True
        try:
            rotate = rotate.get_object() if hasattr(rotate, "get_object") else rotate
            turns = int(float(rotate or 0)) // 90 * 90 % 360
        except (TypeError, ValueError):
            turns = 0
        return cls(box=box, rotate=turns, empty=empty)

    @property
    def width(self) -> float:
        x0, y0, x1, y1 = self.box
        return (x1 - x0) if self.rotate in (0, 180) else (y1 - y0)

    @property
    def height(self) -> float:
        x0, y0, x1, y1 = self.box
        return (y1 - y0) if self.rotate in (0, 180) else (x1 - x0)

    def _point_to_user(self, dx: float, dy: float) -> tuple[float, float]:
        x0, y0, x1, y1 = self.box
        if self.rotate == 90:
            return x0 + dy, y0 + dx
        if self.rotate == 180:
            return x1 - dx, y0 + dy
        if self.rotate == 270:
            return x1 - dy, y1 - dx
        return x0 + dx, y1 - dy

    def _point_to_display(self, ux: float, uy: float) -> tuple[float, float]:
        x0, y0, x1, y1 = self.box
        if self.rotate == 90:
            return uy - y0, ux - x0
        if self.rotate == 180:
            return x1 - ux, uy - y0
        if self.rotate == 270:
            return y1 - uy, x1 - ux
        return ux - x0, y1 - uy

    def to_user(self, rect: Rect) -> tuple[float, float, float, float]:
        """A displayed rectangle as a user-space ``/Rect`` (left, bottom, right, top)."""
        x, y, w, h = rect
        return _bounds([self._point_to_user(px, py) for px, py in ((x, y), (x + w, y + h))])

    def to_display(self, user_rect: Any) -> Rect:
        """A user-space rectangle (any corner order) as ``(x, y, width, height)`` on the displayed page."""
        ux0, uy0, ux1, uy1 = (float(v) for v in user_rect)
        left, top, right, bottom = _bounds([self._point_to_display(px, py) for px, py in ((ux0, uy0), (ux1, uy1))])
        return left, top, right - left, bottom - top

    def contains(self, rect: Rect, tolerance: float = 0.01) -> bool:
        x, y, w, h = rect
        return (w > 0 and h > 0 and x >= -tolerance and y >= -tolerance
                and x + w <= self.width + tolerance and y + h <= self.height + tolerance)

    @property
    def upright_matrix(self) -> tuple[int, int, int, int, int, int] | None:
        """The appearance ``/Matrix`` that undoes ``/Rotate`` (None when the page is not rotated):
        the stamp is drawn in displayed width × height and turned counter-clockwise by the page's
        rotation, so the viewer's clockwise turn shows it upright."""
        return {90: (0, 1, -1, 0, 0, 0), 180: (-1, 0, 0, -1, 0, 0), 270: (0, -1, 1, 0, 0, 0)}.get(self.rotate)


def _bounds(points: list[tuple[float, float]]) -> tuple[float, float, float, float]:
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    return min(xs), min(ys), max(xs), max(ys)


def frame_of_page(page: Any, get: Callable[[Any, str], Any] | None = None) -> PageFrame:
    """The frame of a page dictionary (pyHanko's or pikepdf's), with the attributes a page
    inherits from its page tree (``/MediaBox``, ``/CropBox``, ``/Rotate``)."""
    values: dict[str, Any] = {}
    node: Any = page
    for _ in range(64):
        for key in ("/MediaBox", "/CropBox", "/Rotate"):
            if key not in values and key in node:
                values[key] = get(node, key) if get is not None else node[key]
        parent = node.get("/Parent") if hasattr(node, "get") else None
        if parent is None:
            break
        node = parent.get_object() if hasattr(parent, "get_object") else parent
    return PageFrame.of(values.get("/MediaBox"), values.get("/CropBox"), values.get("/Rotate"))
