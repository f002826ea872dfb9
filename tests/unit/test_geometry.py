"""The displayed page and its user space: corners land where a viewer shows them, for every /Rotate."""

from __future__ import annotations

import io

import pikepdf
import pytest

from adapters._pdf.geometry import PageFrame, frame_of_page

A4 = [0, 0, 595, 842]


@pytest.mark.parametrize(("rotate", "displayed_top_left_in_user_space"), [
    (0, (0, 842)),  # not rotated: the page's top-left corner
    (90, (0, 0)),  # turned clockwise: the bottom-left corner comes to the top-left
    (180, (595, 0)),
    (270, (595, 842)),
])
def test_the_displayed_top_left_corner_is_the_right_corner_of_the_page(
    rotate: int, displayed_top_left_in_user_space: tuple[float, float]
) -> None:
    frame = PageFrame.of(A4, None, rotate)
    x0, y0, x1, y1 = frame.to_user((0, 0, 10, 10))
    ux, uy = displayed_top_left_in_user_space
    assert (x0 == ux or x1 == ux) and (y0 == uy or y1 == uy)
    assert (frame.width, frame.height) == ((595, 842) if rotate in (0, 180) else (842, 595))


@pytest.mark.parametrize("rotate", [0, 90, 180, 270])
def test_a_box_goes_to_user_space_and_back_unchanged(rotate: int) -> None:
    frame = PageFrame.of([10, 20, 610, 820], [30, 40, 600, 800], rotate)
    box = (100.0, 50.0, 170.0, 62.0)
    assert frame.to_display(frame.to_user(box)) == pytest.approx(box)
    x0, y0, x1, y1 = frame.to_user(box)
    assert 30 <= x0 < x1 <= 600 and 40 <= y0 < y1 <= 800  # inside the CropBox


def test_reversed_and_offset_boxes_are_normalised_and_a_cropbox_outside_the_mediabox_shows_nothing() -> None:
    assert PageFrame.of([595, 842, 0, 0], None, 0).box == (0, 0, 595, 842)
    outside = PageFrame.of(A4, [700, 900, 800, 1000], 0)
    assert outside.empty and outside.box == (0, 0, 595, 842)  # poppler shows nothing of such a page
    assert not PageFrame.of(A4, [10, 10, 300, 400], 0).empty
    assert PageFrame.of(A4, [-50, -50, 300, 400], 0).box == (0, 0, 300, 400)  # clipped to the MediaBox
    assert PageFrame.of(A4, None, -90).rotate == 270 and PageFrame.of(A4, None, 450).rotate == 90


def test_a_page_inherits_its_boxes_and_rotation_from_the_page_tree() -> None:
    pdf = pikepdf.new()
    pdf.add_blank_page(page_size=(595, 842))
    pdf.Root.Pages["/Rotate"] = 90
    pdf.Root.Pages["/MediaBox"] = pikepdf.Array([0, 0, 400, 300])
    del pdf.pages[0].obj["/MediaBox"]
    out = io.BytesIO()
    pdf.save(out)
    with pikepdf.open(io.BytesIO(out.getvalue())) as reopened:
        frame = frame_of_page(reopened.pages[0].obj)
    assert frame.box == (0, 0, 400, 300) and frame.rotate == 90 and (frame.width, frame.height) == (300, 400)


@pytest.mark.parametrize("rotate", [90, 180, 270])
def test_the_appearance_matrix_turns_the_stamp_against_the_page(rotate: int) -> None:
    a, b, c, d, _e, _f = PageFrame.of(A4, None, rotate).upright_matrix or (1, 0, 0, 1, 0, 0)
    # the viewer turns the page clockwise by ``rotate``; the matrix turns the stamp counter-clockwise
    turns = {(0, 1, -1, 0): 90, (-1, 0, 0, -1): 180, (0, -1, 1, 0): 270}[(a, b, c, d)]
    assert turns == rotate
    assert PageFrame.of(A4, None, 0).upright_matrix is None
