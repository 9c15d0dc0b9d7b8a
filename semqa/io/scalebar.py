"""Pixel size from the scale bar in an instrument's data bar: an opt-in fallback, never a guess.

Where a file states no pixel size, its data bar (:mod:`semqa.io.databar`) usually still shows a
scale bar: a solid horizontal line or bar of round length with its label ("10 µm", "500 nm").
semqa has no OCR engine, so the label is given by the user (``--scale-bar 10um``); the line's
length in pixels is measured here. The pixel size is then ``L / N`` for a label ``L`` and a
line of ``N`` pixels.

The line is the longest *thin* run of ink in the bar (ink: pixels other than the bar's
background): a run along a row at least :data:`MIN_BAR_PX` long, in a stack of such rows at
most 1/:data:`MIN_ASPECT` of its length thick, with the rows beside the stack mostly not ink,
so text glyphs (about as tall as wide), a label touching the line and the logo box are not
taken for it. End ticks (``|——|``) are outside the run's rows and do not change its length.

This is less accurate than the instrument's metadata: the drawn length is rounded to whole
pixels (± 1 px of ``N``, a relative error ``1/N``; 1 % for a 100 px bar) and the instrument
may draw the bar's end caps inside or outside the nominal length. The source recorded says so
and the result carries a warning.
"""

from __future__ import annotations

import numpy as np
from pydantic import BaseModel, Field

from semqa.errors import InputError
from semqa.io.databar import find_databars

#: Smallest length-to-thickness ratio of a scale bar. Glyphs of the 5 × 7 font and wider
#: proportional fonts are at most ~2:1 (an "m" or "—" at 3:1), logos are boxes; the shortest
#: scale bars instruments draw are ~40 px long and ≤ 6 px thick.
MIN_ASPECT: float = 5.0

#: Fewest pixels a scale bar may span: below it, ±1 px is more than 5 % of the length.
MIN_BAR_PX: int = 20


class ScaleBar(BaseModel):
    """A scale bar measured in a frame's data bar."""

    length_px: int = Field(description="extent of the line along x, pixels of the input image")
    thickness_px: int = Field(description="extent across, pixels")
    x: int = Field(description="first column of the line in the input image")
    y: int = Field(description="first row of the line in the input image")
    edge: str = Field(description="edge of the data bar it was found in")


def _runs(row: np.ndarray) -> list[tuple[int, int]]:
    """``(start, stop)`` of each run of True in a 1-D boolean array."""
    edges = np.flatnonzero(np.diff(np.concatenate(([0], row.astype(np.int8), [0]))))
    return list(zip(edges[::2].tolist(), edges[1::2].tolist()))


def _line_in(ink: np.ndarray) -> tuple[int, int, int, int] | None:
    """The longest thin line of ``ink``: ``(row, col, length, thickness)``, or None.

    A run of ink along a row, ``length`` pixels, is a line when the rows in which that whole
    span is ink form a stack at most ``length / MIN_ASPECT`` thick and the rows just above and
    below the stack are mostly not ink over the span (a solid logo box, or a glyph row inside
    it, is ink there too).
    """
    best = None
    h = ink.shape[0]
    for r in range(h):
        for c0, c1 in _runs(ink[r]):
            length = c1 - c0
            if length < MIN_BAR_PX or (best is not None and length <= best[2]):
                continue
            full = ink[:, c0:c1].all(axis=1)
            top = r
            while top > 0 and full[top - 1]:
                top -= 1
            bottom = r + 1
            while bottom < h and full[bottom]:
                bottom += 1
            thickness = bottom - top
            beside = [ink[rr, c0:c1].mean() for rr in (top - 1, bottom) if 0 <= rr < h]
            if length >= MIN_ASPECT * thickness and all(share < 0.5 for share in beside):
                best = (top, c0, length, thickness)
    return best


def find_scale_bar(image: np.ndarray, name: str = "image") -> ScaleBar:
    """The scale bar in the data bar of ``image``, or a one-line :class:`InputError` saying why none was found.

    Parameters
    ----------
    image : numpy.ndarray
        2-D frame as read (exact stored levels).
    name : str
        Image name, for error messages.
    """
    h, w = image.shape
    found = find_databars(image)
    if not found.bars:
        raise InputError(f"{name}: no data bar found, so no scale bar to read the pixel size from")
    best: ScaleBar | None = None
    for bar in found.bars:
        rows = {
            "bottom": (h - bar.size_px, h, 0, w),
            "top": (0, bar.size_px, 0, w),
            "right": (found.first_row, found.stop_row, w - bar.size_px, w),
            "left": (found.first_row, found.stop_row, 0, bar.size_px),
        }[bar.edge]
        y0, y1, x0, x1 = rows
        line = _line_in(image[y0:y1, x0:x1] != bar.background)
        if line is not None and (best is None or line[2] > best.length_px):
            best = ScaleBar(length_px=line[2], thickness_px=line[3], x=x0 + line[1], y=y0 + line[0], edge=bar.edge)
    if best is None:
        raise InputError(
            f"{name}: the data bar holds no scale bar (no horizontal line ≥ {MIN_BAR_PX} px, "
            f"≥ {MIN_ASPECT:g}× as long as thick)"
        )
    return best


def pixel_size_from_scale_bar(image: np.ndarray, length_um: float, name: str = "image") -> tuple[float, str, str]:
    """µm per pixel from the scale bar of ``image`` whose printed length is ``length_um``.

    Returns
    -------
    um : float
        ``length_um / length_px``.
    source : str
        ``scale bar (N px = L µm, read from the data bar)``.
    warning : str
        That this is less accurate than instrument metadata, with the rounding error ``1/N``.
    """
    if not length_um > 0:
        raise InputError(f"the scale bar's length must be positive, got {length_um}")
    bar = find_scale_bar(image, name)
    um = length_um / bar.length_px
    source = f"scale bar ({bar.length_px} px = {length_um:g} µm, read from the data bar)"
    warning = (
        f"pixel size {um:.4g} µm read from the scale bar ({bar.length_px} px at x={bar.x}, y={bar.y}) with the length "
        f"given by hand: less accurate than instrument metadata (±1 px = ±{100 / bar.length_px:.1g} %, "
        "and the bar's drawn ends may differ from its nominal length); check it against a calibration"
    )
    return um, source, warning
