"""Finding the instrument's data bar: the information strip an SEM writes into its images.

Every SEM writes a band of full-width rows at the bottom (Zeiss SmartSEM, Thermo Fisher/FEI
incl. Phenom, JEOL, Hitachi, TESCAN) or at the top of the frame, appended below the scanned
field or drawn over it: a uniform background (black, white or grey) carrying text (HV, WD,
magnification, date), a logo and a scale bar. Its pixels are *rendered*, not *detected*:
the background is one exact stored value. Pixels of the micrograph carry shot noise
(the Poisson statistics of the detected electrons), so neighbouring pixels of one row take
many different values. The rule here rests on that difference alone, not on any vendor's
layout:

1. For each row, the *mode fraction* ``c`` is the share of its pixels equal to the row's most
   common stored value.
2. The micrograph's rows set the reference: their median ``c`` and robust spread (MAD,
   floored by the binomial standard error of a share over the row's width). A row is
   *uniform* when ``c`` exceeds both one half (most of the row is one background value, the
   definition of a uniform background) and the micrograph's median by ``z`` spreads, with
   ``z`` the one-sided normal quantile at a family-wise false-alarm rate of 1 % over all rows
   (Bonferroni; so a frame without a bar loses a row with probability ≤ 1 %).
3. A data bar is the tallest band of rows from the top or bottom edge in which most rows are
   uniform and whose innermost row is uniform; by construction the next row inward is not
   (the sharp transition line); its innermost rows must hold the bar's background value
   (or be a line across the width), so flat micrograph rows next to the bar stay. The band's background value must occur in at least
   :data:`MIN_WIDTH_SHARE` of the columns: it spans the width. Bands shorter than :data:`MIN_BAR_ROWS`
   cannot hold text and are left to the analysis; a band over half the frame is not a data
   bar (the frame itself is mostly flat) and is reported, not cut.

Saturated particles are flat too, but only over their own width: a row is uniform only if
more than half of it is one value, so particles at the frame edge are kept unless they cover
most of the width. Lossy (JPEG) files blur the exact background at glyph edges; detection
there is less sure and can be overridden with an explicit region.
"""

from __future__ import annotations

import numpy as np
from pydantic import BaseModel, Field
from scipy import special  # not scipy.stats: its import costs ~0.6 s CPU of every analysis's start-up

#: Fewest rows a data bar has: the smallest legible glyph is 7 rows (the 5 × 7 dot-matrix
#: font), and a strip holding it has at least one more row of margin.
MIN_BAR_ROWS: int = 8

#: Family-wise probability that a frame without a bar has any row called uniform by chance.
FALSE_ALARM_RATE: float = 0.01

#: Share of a band's rows that must be uniform (a majority): rows through dense text or a
#: logo may fall below one half of background, but never most of a bar's rows.
MIN_UNIFORM_SHARE: float = 0.5

#: Share of the columns in which a bar's background value must occur: the background spans
#: the width, and the text, scale bar and logo leave it visible in nearly every column (a
#: solid logo may fill a tenth). Saturated particles are flat only over their own columns.
MIN_WIDTH_SHARE: float = 0.9


class DataBar(BaseModel):
    """A data bar found along one edge of a frame."""

    edge: str = Field(description="'top' or 'bottom'")
    rows: int = Field(description="height of the bar in pixels")
    background: float = Field(description="most common value of the bar's rows, in [0, 1]")
    width_share: float = Field(description="share of the columns in which the background occurs")
    uniform_share: float = Field(description="share of the bar's rows that are uniform")


class DataBarSearch(BaseModel):
    """Outcome of :func:`find_databars`: the bars found and the rows left to analyse."""

    bars: list[DataBar] = Field(default_factory=list)
    first_row: int = Field(description="first row of the micrograph (inclusive)")
    stop_row: int = Field(description="last row of the micrograph + 1")
    threshold: float = Field(description="mode fraction above which a row counts as uniform")
    notes: list[str] = Field(default_factory=list, description="why a candidate band was not cut")


def row_mode_fraction(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Share of each row's pixels equal to the row's most common value, and that value.

    Values are compared exactly: images are read as stored integers scaled to [0, 1], so two
    pixels are equal exactly when they were stored with the same level.
    """
    image = np.asarray(image)
    h, w = image.shape
    s = np.sort(image, axis=1)
    change = np.ones((h, w + 1), dtype=bool)
    change[:, 1:w] = s[:, 1:] != s[:, :-1]
    starts = np.flatnonzero(change.ravel())
    # Consecutive change positions bound a run of equal values; the gap from one row's end
    # (column w) to the next row's start is a spurious run of 1, below any real maximum.
    lengths = np.diff(starts)
    rows = starts[:-1] // (w + 1)
    best = np.zeros(h, dtype=np.int64)
    np.maximum.at(best, rows, lengths)
    # The value of each row's longest run: the first run start reaching the maximum.
    is_best = lengths == best[rows]
    first = np.full(h, -1, dtype=np.int64)
    idx = np.flatnonzero(is_best)[::-1]
    first[rows[idx]] = starts[idx] - rows[idx] * (w + 1)
    mode = s[np.arange(h), np.clip(first, 0, w - 1)]
    return best / w, mode


def uniform_threshold(fractions: np.ndarray, width: int, false_alarm: float = FALSE_ALARM_RATE) -> float:
    """Mode fraction above which a row is uniform rather than a noisy micrograph row.

    The micrograph's rows are the majority (a bar is at most half the frame), so their median
    and median absolute deviation (scaled by 1.4826 to a normal sd) are robust estimates
    however tall the bar. The spread is floored by the binomial standard error
    ``sqrt(p (1 − p) / width)`` of a share estimated over ``width`` pixels, so that a frame
    whose rows happen to agree closely is not given a threshold inside its own noise.
    """
    med = float(np.median(fractions))
    mad = 1.4826 * float(np.median(np.abs(fractions - med)))
    binomial = float(np.sqrt(max(med * (1.0 - med), 1.0 / width) / width))
    z = float(-special.ndtri(false_alarm / len(fractions)))  # scipy.stats.norm.isf, as scipy computes it
    return max(0.5, med + z * max(mad, binomial))


def _band_height(uniform: np.ndarray, limit: int) -> int:
    """Tallest band from index 0 whose innermost row is uniform and most of whose rows are."""
    counts = np.cumsum(uniform[:limit])
    heights = np.arange(1, len(counts) + 1)
    ok = uniform[:limit] & (counts >= MIN_UNIFORM_SHARE * heights)
    return int(heights[ok].max()) if ok.any() else 0


def find_databars(image: np.ndarray) -> DataBarSearch:
    """Find data bars along the top and bottom edges of a frame.

    Parameters
    ----------
    image : numpy.ndarray
        2-D grayscale frame, values as read (exact stored levels).

    Returns
    -------
    DataBarSearch
        The bars found (possibly none) and the rows ``[first_row, stop_row)`` left to analyse.
    """
    image = np.asarray(image)
    h, w = image.shape
    fractions, modes = row_mode_fraction(image)
    threshold = uniform_threshold(fractions, w)
    uniform = fractions > threshold
    limit = h // 2 + 1  # one row past half the frame, to tell "half or more" from "less"
    bars: list[DataBar] = []
    notes: list[str] = []
    first, stop = 0, h
    for edge, order in (("bottom", slice(None, None, -1)), ("top", slice(None))):
        u, m, f = uniform[order], modes[order], fractions[order]
        rows = _band_height(u, limit)
        if rows < MIN_BAR_ROWS:
            continue
        if rows > h // 2:
            notes.append(f"{edge}: {rows} of {h} rows are flat; more than half the frame is not a data bar, nothing cut")
            continue
        values, counts = np.unique(m[:rows][u[:rows]], return_counts=True)
        background = values[np.argmax(counts)]
        # The band's inner end must be the bar's: a uniform row of its background, or a line
        # across the width (a border rule). Flat rows of another value there are the
        # micrograph's (saturated particles touching the bar) and stay in the analysis.
        while rows > 0 and not ((u[rows - 1] and m[rows - 1] == background) or f[rows - 1] >= MIN_WIDTH_SHARE):
            rows -= 1
        band = image[order][:rows]
        width_share = float((band == background).any(axis=0).mean())
        if width_share < MIN_WIDTH_SHARE:
            notes.append(
                f"{edge}: {rows} flat rows, but their value {float(background):.3g} occurs in only "
                f"{width_share:.0%} of the columns (not a full-width bar; saturated particles?), nothing cut"
            )
            continue
        bars.append(
            DataBar(
                edge=edge,
                rows=rows,
                background=float(background),
                width_share=width_share,
                uniform_share=float(u[:rows].mean()),
            )
        )
        if edge == "bottom":
            stop = h - rows
        else:
            first = rows
    if stop - first < MIN_BAR_ROWS:  # bars from both edges left no micrograph: cut nothing
        notes.append("bars at both edges would leave no micrograph; nothing cut")
        bars, first, stop = [], 0, h
    return DataBarSearch(bars=bars, first_row=first, stop_row=stop, threshold=threshold, notes=notes)
