"""The analysed region of a frame: the micrograph without the instrument's data bar.

A region is given by hand (``--roi x,y,w,h``), found by :func:`semqa.io.databar.find_databars`,
or the full frame. It is recorded per image in the result (:class:`AnalysedRegion`), in pixels
of the input image, the origin at its top-left corner, x to the right, y down. The analysis
segments the region only, so a particle cut by the region's edge is excluded like one cut by
the frame's edge (ISO 13322-1).
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import BaseModel, Field

from semqa.errors import InputError
from semqa.io.databar import MIN_BAR_ROWS, find_databars

RegionSource = Literal["auto-databar", "roi-flag", "full-frame"]


class AnalysedRegion(BaseModel):
    """Rectangle of the input image that was analysed, and how it was chosen."""

    x: int = Field(ge=0, description="first column, pixels of the input image")
    y: int = Field(ge=0, description="first row, pixels of the input image")
    width: int = Field(ge=1)
    height: int = Field(ge=1)
    source: RegionSource = Field(
        description="'auto-databar': a data bar was found and left out; 'roi-flag': given by hand; "
        "'full-frame': the whole image (no bar found, or detection off)"
    )
    detail: str = Field("", description="what was found or why nothing was cut")

    def crop(self, image: np.ndarray) -> np.ndarray:
        """The region's pixels of ``image`` (a view)."""
        return image[self.y : self.y + self.height, self.x : self.x + self.width]


def parse_roi(text: str) -> tuple[int, int, int, int]:
    """``"x,y,w,h"`` (pixels) as a tuple, or a one-line :class:`InputError`."""
    parts = [p.strip() for p in str(text).split(",")]
    try:
        values = tuple(int(p) for p in parts)
    except ValueError:
        values = ()
    if len(values) != 4 or values[0] < 0 or values[1] < 0 or values[2] < 1 or values[3] < 1:
        raise InputError(f"ROI must be x,y,width,height in whole pixels (x, y ≥ 0; width, height ≥ 1), got {text!r}")
    return values  # type: ignore[return-value]


def choose_region(
    image: np.ndarray, name: str, roi: tuple[int, int, int, int] | None = None, detect_databar: bool = True
) -> AnalysedRegion:
    """The region of ``image`` to analyse.

    Parameters
    ----------
    image : numpy.ndarray
        The input frame (2-D).
    name : str
        Image name, for error messages.
    roi : tuple of int, optional
        ``(x, y, width, height)`` given by hand; it must lie inside the frame. Overrides detection.
    detect_databar : bool
        Look for a data bar (:func:`semqa.io.databar.find_databars`) when no ``roi`` is given.
    """
    h, w = image.shape
    if roi is not None:
        x, y, rw, rh = roi
        if x + rw > w or y + rh > h:
            raise InputError(f"{name}: ROI x={x}, y={y}, {rw}×{rh} px reaches outside the {w}×{h} px image")
        return AnalysedRegion(x=x, y=y, width=rw, height=rh, source="roi-flag", detail="given by hand")
    if not detect_databar:
        return AnalysedRegion(x=0, y=0, width=w, height=h, source="full-frame", detail="data bar detection off")
    if h < 2 * MIN_BAR_ROWS:
        return AnalysedRegion(x=0, y=0, width=w, height=h, source="full-frame", detail="frame too small for a data bar")
    found = find_databars(image)
    if not found.bars:
        detail = "; ".join(found.notes) or "no data bar found"
        return AnalysedRegion(x=0, y=0, width=w, height=h, source="full-frame", detail=detail)
    detail = "; ".join(
        [f"{b.edge} bar of {b.size_px} {'rows' if b.edge in ('top', 'bottom') else 'columns'} "
         f"(background {b.background:.3g}) left out" for b in found.bars] + found.notes
    )
    return AnalysedRegion(
        x=found.first_col, y=found.first_row, width=found.stop_col - found.first_col,
        height=found.stop_row - found.first_row, source="auto-databar", detail=detail,
    )
