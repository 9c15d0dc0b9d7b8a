"""Finding the instrument's data bar: the information strip an SEM writes into its images.

Every SEM writes a band of full-width rows at the bottom (Zeiss SmartSEM, Thermo Fisher/FEI
incl. Phenom, JEOL, Hitachi, TESCAN) or at the top of the frame, appended below the scanned
field or drawn over it; some exports put a panel of full-height columns at the left or right
(searched the same way on the columns, after the top and bottom): a uniform background (black, white or grey) carrying text (HV, WD,
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

4. The band must be *rendered* (:func:`rendered_reason`): some of its lines wholly background
   (margins), some ink, and the ink in connected strokes rather than scattered like noise.
   A dark substrate or a dark particle along the edge is flat by shot noise (mostly zero
   counts), never a whole line of one value except where there is almost no signal, and
   there its counts are scattered at random; it stays in the analysis.

Saturated particles are flat too, but only over their own width: a row is uniform only if
more than half of it is one value, so particles at the frame edge are kept unless they cover
most of the width. Lossy (JPEG) files blur the exact background at glyph edges; detection
there is less sure and can be overridden with an explicit region.
"""

from __future__ import annotations

import numpy as np
from pydantic import BaseModel, Field
from scipy import special

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

    edge: str = Field(description="'top', 'bottom', 'left' or 'right'")
    size_px: int = Field(description="extent of the bar across its edge: rows (top, bottom) or columns (left, right)")
    background: float = Field(description="most common value of the bar's lines, in [0, 1]")
    width_share: float = Field(description="share of the positions along the edge at which the background occurs")
    uniform_share: float = Field(description="share of the bar's lines that are uniform")


class DataBarSearch(BaseModel):
    """Outcome of :func:`find_databars`: the bars found and the rectangle left to analyse."""

    bars: list[DataBar] = Field(default_factory=list)
    first_row: int = Field(description="first row of the micrograph (inclusive)")
    stop_row: int = Field(description="last row of the micrograph + 1")
    first_col: int = Field(0, description="first column of the micrograph (inclusive)")
    stop_col: int = Field(description="last column of the micrograph + 1")
    threshold: float = Field(description="mode fraction above which a row counts as uniform")
    column_threshold: float | None = Field(None, description="the same for the columns (None: frame too narrow to search)")
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


def ink_clustering(band: np.ndarray, background: float) -> tuple[float, float]:
    """Share of a band's non-background pixels with a non-background 4-neighbour, and its chance level.

    Glyph strokes, rules and logos are connected sets of pixels, so nearly every ink pixel
    touches another. Pixels that differ from the background by shot noise alone are
    independent: with a share ``q`` of them in the band, a pixel has a non-background
    neighbour among its four with probability ``1 − (1 − q)⁴`` (the chance level returned).
    """
    ink = band != background
    if not ink.any():
        return 0.0, 0.0
    padded = np.pad(ink, 1)
    neighbour = padded[:-2, 1:-1] | padded[2:, 1:-1] | padded[1:-1, :-2] | padded[1:-1, 2:]
    q = float(ink.mean())
    return float((neighbour & ink).sum() / ink.sum()), 1.0 - (1.0 - q) ** 4


def rendered_reason(band: np.ndarray, background: float, false_alarm: float = FALSE_ALARM_RATE) -> str | None:
    """Why ``band`` (lines along an edge, first axis across the edge) is *not* a rendered data bar; None if it is.

    A bar is drawn by software: it has margin lines wholly of its background (above, below
    or between its lines of text) and ink (text, a scale bar) made of connected strokes.
    Detected pixels carry shot noise: a line of ``w`` pixels all at one stored value has
    probability ``p₀ʷ`` (``p₀`` the share of that value), negligible unless the region holds
    almost no signal; and there its few non-background pixels are scattered independently,
    which :func:`ink_clustering` tests (one-sided z test of the clustered share against its
    chance level, binomial standard error, at ``false_alarm``). A dark substrate or a dark
    particle along the edge therefore stays in the analysis.
    """
    blank = (band == background).all(axis=1)
    if not blank.any():
        return "no line of it is wholly background (shot noise, not a rendered strip)"
    if blank.all():
        return "it holds no text or scale bar (a flat region, not an information strip)"
    share, chance = ink_clustering(band, background)
    n = int((band != background).sum())
    z = float(-special.ndtri(false_alarm))  # scipy.stats.norm.isf, as scipy computes it
    if share <= chance + z * np.sqrt(max(chance * (1.0 - chance), 1.0 / n) / n):
        return f"its non-background pixels are scattered like noise ({share:.0%} touch another, {chance:.0%} by chance)"
    return None


def _edge_bars(image: np.ndarray, edges: tuple[str, str]) -> tuple[list[DataBar], int, int, float, list[str]]:
    """Bars along the two ends of the first axis of ``image`` (its rows): ``edges`` names the (end, start)."""
    h, w = image.shape
    fractions, modes = row_mode_fraction(image)
    threshold = uniform_threshold(fractions, w)
    uniform = fractions > threshold
    limit = h // 2 + 1  # one line past half the frame, to tell "half or more" from "less"
    bars: list[DataBar] = []
    notes: list[str] = []
    first, stop = 0, h
    for edge, order in ((edges[0], slice(None, None, -1)), (edges[1], slice(None))):
        u, m, f = uniform[order], modes[order], fractions[order]
        size = _band_height(u, limit)
        if size < MIN_BAR_ROWS:
            continue
        if size > h // 2:
            notes.append(f"{edge}: {size} of {h} lines are flat; more than half the frame is not a data bar, nothing cut")
            continue
        values, counts = np.unique(m[:size][u[:size]], return_counts=True)
        background = values[np.argmax(counts)]
        # The band's inner end must be the bar's: a uniform line of its background, or a line
        # across the width (a border rule). Flat lines of another value there are the
        # micrograph's (saturated particles touching the bar) and stay in the analysis.
        while size > 0 and not ((u[size - 1] and m[size - 1] == background) or f[size - 1] >= MIN_WIDTH_SHARE):
            size -= 1
        band = image[order][:size]
        width_share = float((band == background).any(axis=0).mean())
        if width_share < MIN_WIDTH_SHARE:
            notes.append(
                f"{edge}: {size} flat lines, but their value {float(background):.3g} occurs at only "
                f"{width_share:.0%} of the positions along the edge (not a full-width bar; saturated particles?), nothing cut"
            )
            continue
        why_not = rendered_reason(band, background)
        if why_not is not None:
            notes.append(f"{edge}: {size} flat lines of value {float(background):.3g}, but {why_not}; nothing cut")
            continue
        bars.append(
            DataBar(edge=edge, size_px=size, background=float(background), width_share=width_share,
                    uniform_share=float(u[:size].mean()))
        )
        if order.step == -1:
            stop = h - size
        else:
            first = size
    if stop - first < MIN_BAR_ROWS:  # bars from both ends left no micrograph: cut nothing
        notes.append(f"bars at the {edges[0]} and {edges[1]} would leave no micrograph; nothing cut")
        bars, first, stop = [], 0, h
    return bars, first, stop, threshold, notes


def find_databars(image: np.ndarray) -> DataBarSearch:
    """Find data bars along the edges of a frame: bottom and top first, then right and left.

    The side search runs on the rows left by the top/bottom search, with the same rule on
    the columns (a side strip is a band of full-height columns).

    Parameters
    ----------
    image : numpy.ndarray
        2-D grayscale frame, values as read (exact stored levels).

    Returns
    -------
    DataBarSearch
        The bars found (possibly none) and the rectangle ``[first_row, stop_row) ×
        [first_col, stop_col)`` left to analyse.
    """
    image = np.asarray(image)
    w = image.shape[1]
    bars, first, stop, threshold, notes = _edge_bars(image, ("bottom", "top"))
    first_col, stop_col, column_threshold = 0, w, None
    if w >= 2 * MIN_BAR_ROWS:
        side, first_col, stop_col, column_threshold, side_notes = _edge_bars(image[first:stop].T, ("right", "left"))
        bars, notes = bars + side, notes + side_notes
    return DataBarSearch(
        bars=bars, first_row=first, stop_row=stop, first_col=first_col, stop_col=stop_col,
        threshold=threshold, column_threshold=column_threshold, notes=notes,
    )
