"""Fast array primitives of the segmentation, each tested equal to the library function it replaces.

They exist because the library versions dominate the segmentation's time on large frames
(``tests/test_segmentation.py`` checks each against scipy / numpy / scikit-image):

* :func:`max_filter_square` — :func:`scipy.ndimage.maximum_filter` on masks and narrow labels;
* :func:`label_median` — per-label medians (:func:`scipy.ndimage.median`, lower median);
* :func:`label_median_mean` — :func:`scipy.ndimage.median` per label (the mean of the two middle
  values), by grouping and partitioning instead of the library's sort of every value by label and value;
* :func:`label_max` — :func:`scipy.ndimage.maximum` per label, by one stable radix sort of the
  labels and a maximum over each label's run, instead of the library's per-label selection;
* :func:`median` — :func:`numpy.median` of an array, from one sort instead of a partition;
* :func:`perimeter_crofton` — :func:`skimage.measure.perimeter_crofton` (4 directions) by shifted
  sums instead of a generic convolution;
* :func:`block_mean` — :func:`skimage.measure.block_reduce` with ``np.mean``;
* :func:`upsample_linear` — bilinear interpolation between cell centres (edges clamped);
* :func:`narrow_labels` — labels in the narrowest unsigned type;
* :func:`max_cross` — :func:`scipy.ndimage.maximum_filter` with the 4-connected cross footprint
  (``mode='reflect'``), by four shifted maxima instead of the library's generic footprint loop;
* :func:`dilate_cross` — :func:`scipy.ndimage.binary_dilation` with its default cross (one
  iteration), by four shifted ORs;
* :func:`open_disc` — :func:`scipy.ndimage.binary_opening` by ``skimage.morphology.disk(radius)``,
  for radii 1 and 2 (the cross and the diamond) by shifted ANDs and ORs;
* :func:`flood` — :func:`skimage.segmentation.watershed` (4-connected, from markers, within a
  mask) on a crop whose mask has a False border, without the padding and setup that cost most
  of a call on a small crop;
* :class:`LabelSets` — :class:`scipy.cluster.hierarchy.DisjointSet` over the labels 1…n (the same
  roots after the same merges), on lists instead of dictionaries: the merge trees of the
  splitting call it tens of thousands of times per frame;
* :func:`majority3` — :func:`scipy.ndimage.median_filter` of a mask, size 3, by nine shifted sums;
* :func:`nonnegative_line_fit` — :func:`scipy.optimize.nnls` of a weighted straight line
  ``a·x + n`` (the noise model's variance–mean line, the focus fit's many scene-plus-floor
  models), for many rows at once and without importing ``scipy.optimize``.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from skimage.filters import threshold_otsu
from skimage.segmentation import _watershed_cy


def label_median(values: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Median (lower of the two middle values) of ``values`` for labels 1…max; NaN where a label has no pixel.

    The pixels are grouped by label with one stable integer argsort (a radix sort for 16-bit
    labels), then each label's middle value is selected by partition. Sorting by value as well
    costs several times more, and :func:`scipy.ndimage.median` sorts the whole image per call.
    """
    sel = labels > 0
    lab = labels[sel]
    n = int(labels.max())
    order = np.argsort(lab.astype(np.uint16) if n < 2**16 else lab, kind="stable")
    grouped = values[sel][order]
    counts = np.bincount(lab, minlength=n + 1)[1:]
    median = np.full(n, np.nan)
    start = 0
    for i, (count, end) in enumerate(zip(counts.tolist(), np.cumsum(counts).tolist())):
        if count:
            k = (count - 1) // 2
            median[i] = np.partition(grouped[start:end], k)[k]
        start = end
    return median


def label_median_mean(values: np.ndarray, ids: np.ndarray, n: int) -> np.ndarray:
    """``scipy.ndimage.median(values, ids, index=numpy.arange(1, n + 1))`` of matching 1-D ``values``
    and ``ids`` (labels 1…n, each present): per label the mean of its two middle values (its middle
    one for an odd count), ``(lo + hi) / 2.0`` in ``values``' float dtype as the library takes it.

    The library sorts every value by label and value (``numpy.lexsort``); the middle values are
    order statistics, so grouping by label (one stable integer argsort) and partitioning each group
    at its middle ranks selects the same two values.

    Raises
    ------
    ValueError
        If a label of 1…n has no value (the library returns an arbitrary value there).
    """
    counts = np.bincount(ids, minlength=n + 1)[1 : n + 1]
    if counts.size < n or not counts.all():
        raise ValueError("label_median_mean needs every label 1…n to hold a value")
    grouped = values[np.argsort(ids.astype(np.uint16) if n < 2**16 else ids, kind="stable")]
    out = np.empty(n, dtype=values.dtype)
    start = 0
    for i, count in enumerate(counts.tolist()):
        lo, hi = (count - 1) // 2, count // 2
        part = np.partition(grouped[start : start + count], (lo, hi) if hi != lo else lo)
        out[i] = (part[lo] + part[hi]) / 2.0
        start += count
    return out


def label_max(values: np.ndarray, ids: np.ndarray, n: int) -> np.ndarray:
    """Per label 0…n, the maximum of ``values`` (float64) over matching 1-D ``ids``: entry ``i`` is
    ``scipy.ndimage.maximum(values, ids, index=i)`` for a label that holds a value, 0.0 for one
    that holds none (and for 0 unless it holds values).

    A maximum is exact in any order, so grouping the values by label (one stable integer argsort:
    a radix sort for labels below 2¹⁶) and reducing each label's run gives the library's values,
    about 4× faster than ``numpy.maximum.at`` on a crop's labels.
    """
    out = np.zeros(n + 1)
    if ids.size == 0:
        return out
    order = np.argsort(ids.astype(np.uint16) if n < 2**16 else ids, kind="stable")
    grouped = ids[order]
    starts = np.flatnonzero(np.concatenate([[True], grouped[1:] != grouped[:-1]]))
    out[grouped[starts]] = np.maximum.reduceat(values[order], starts)
    return out


def median(values: np.ndarray) -> np.floating:
    """``numpy.median(values)`` (all elements), from one sort rather than numpy's partition.

    numpy's sort of floats is vectorised (several times faster than its introselect on a few
    hundred thousand values, as the noise fit's residuals are), and the middle values of the
    sorted array are the partition's: the mean of the middle two (one for an odd count) is then
    taken as ``numpy.median`` takes it, so the result is the same to the bit. NaN (sorted last)
    and empty input go to ``numpy.median`` itself.
    """
    ordered = np.sort(values, axis=None)
    n = ordered.size
    if n == 0 or np.isnan(ordered[-1]):
        return np.median(values)
    half = n // 2
    return np.mean(ordered[half - 1 : half + 1] if n % 2 == 0 else ordered[half : half + 1])


#: scikit-image's Crofton weights for 4 directions, per code of a 2 × 2 configuration (the table
#: of ``skimage.measure.perimeter_crofton``, the same expressions, so the same float64 values).
_CROFTON_4 = np.array([
    0, np.pi / 4 * (1 + 1 / (np.sqrt(2))), np.pi / (4 * np.sqrt(2)), np.pi / (2 * np.sqrt(2)),
    0, np.pi / 4 * (1 + 1 / (np.sqrt(2))), 0, np.pi / (4 * np.sqrt(2)),
    np.pi / 4, np.pi / 2, np.pi / (4 * np.sqrt(2)), np.pi / (4 * np.sqrt(2)),
    np.pi / 4, np.pi / 2, 0, 0,
])


def perimeter_crofton(image: np.ndarray) -> np.floating:
    """``skimage.measure.perimeter_crofton(image, directions=4)``: the Crofton perimeter, px.

    The library codes every 2 × 2 configuration of the zero-padded mask (weights 1, 2, 4, 8) with a
    generic ``scipy.ndimage.convolve`` and weighs the histogram of codes with its table; here the
    codes are three shifted integer sums of a mask padded once, and the histogram is weighed by the
    same table in the same product, so the perimeter is the same to the bit at a quarter of the cost
    on a particle's small box (``tests/test_primitives.py``).
    """
    h, w = image.shape
    # Two zero rows and columns before the mask and one after: the library's one-pixel pad, plus the
    # row and column its convolution reads (as zeros) beyond the padded array's first edge.
    padded = np.zeros((h + 3, w + 3), dtype=np.uint8)
    padded[2 : h + 2, 2 : w + 2] = image > 0
    code = padded[1:, 1:] + 4 * padded[1:, :-1] + 2 * padded[:-1, 1:] + 8 * padded[:-1, :-1]
    return _CROFTON_4 @ np.bincount(code.ravel(), minlength=16)


def otsu_mask(image: np.ndarray) -> np.ndarray | None:
    """Otsu's upper class, the threshold taken from every other row and column (4× fewer pixels).

    The mask only seeds later steps (local thresholds, the first look's substrate), so the
    subsample's threshold is precise enough. None for a flat image, which has no two classes.

    Examples
    --------
    >>> image = np.zeros((8, 8), np.float32); image[2:5, 2:5] = 1.0
    >>> int(otsu_mask(image).sum())
    9
    >>> otsu_mask(np.ones((8, 8))) is None
    True
    """
    sample = image[::2, ::2] if min(image.shape) >= 64 else image
    if float(sample.max()) <= float(sample.min()):
        return None
    return image > threshold_otsu(sample)


def block_mean(image: np.ndarray, factor: int) -> np.ndarray:
    """Mean over ``factor × factor`` blocks (the remainder rows and columns dropped).

    Summed as ``factor`` strided row slices, then column slices: a reduction over the short
    axes of a ``(h, factor, w, factor)`` view is about ten times slower.
    """
    h, w = image.shape[0] // factor, image.shape[1] // factor
    rows = sum(image[i : h * factor : factor, : w * factor] for i in range(factor))
    return sum(rows[:, j::factor] for j in range(factor)) / np.float32(factor * factor)


def _interp_weights(n_out: int, n_in: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Linear interpolation between cell centres (edges clamped): output ``i`` is
    ``w[i] * input[lo[i]] + (1 - w[i]) * input[lo[i] + 1]``, with ``lo + 1`` clipped to the last cell."""
    pos = np.clip((np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5, 0, n_in - 1)
    lo = np.minimum(np.floor(pos).astype(np.intp), n_in - 1)
    hi = np.minimum(lo + 1, n_in - 1)
    return lo, hi, (1.0 - (pos - lo)).astype(np.float32)


def upsample_linear(small: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Bilinear upsampling of a coarse smooth field, columns then rows.

    Gathers of two neighbours per output line: a matrix product would do the same arithmetic
    with mostly zero weights (and, through a multi-threaded BLAS, cost more CPU than it saves).
    """
    lo, hi, w = _interp_weights(shape[1], small.shape[1])
    cols = w * small[:, lo] + (1 - w) * small[:, hi]
    # Full-size rows are gathered whole and combined in place: two full-size arrays, not five.
    lo, hi, w = _interp_weights(shape[0], small.shape[0])
    out = cols[lo]
    out *= w[:, None]
    upper = cols[hi]
    upper *= (1 - w)[:, None]
    out += upper
    return out


def max_filter_square(image: np.ndarray, size: int) -> np.ndarray:
    """Maximum over a ``size × size`` square (``size`` odd), as
    ``scipy.ndimage.maximum_filter(image, size)`` computes it (a binary dilation for masks).

    Boolean and unsigned 8- or 16-bit images (masks, labels) are filtered per axis by a sliding
    maximum with doubling windows (1, 2, 4, … then two overlapping ones covering ``size``): a few
    whole-array operations, about eight times faster than the filter's per-line loop on 1-byte
    pixels and up to four times on 2-byte ones. Wider pixels go to the filter (there the memory
    traffic of whole-array operations eats the gain).
    """
    if not (image.dtype == bool or image.dtype in (np.uint8, np.uint16)):
        return ndimage.maximum_filter(image, size=size)
    radius = size // 2
    out = image
    for axis in (0, 1):
        along = np.moveaxis(np.pad(out, [(radius, radius) if a == axis else (0, 0) for a in (0, 1)]), axis, 0)
        span = 1
        while 2 * span <= size:
            along = np.maximum(along[:-span], along[span:])
            span *= 2
        n = out.shape[axis]
        out = np.moveaxis(np.maximum(along[:n], along[size - span : size - span + n]), 0, axis)
    return np.ascontiguousarray(out)


def narrow_labels(labels: np.ndarray, n: int) -> np.ndarray:
    """``labels`` (``0…n``) in the narrowest unsigned type that holds ``n``: less memory traffic in
    every whole-image step, and the fast path of :func:`max_filter_square`."""
    for dtype in (np.uint8, np.uint16):
        if n <= np.iinfo(dtype).max:
            return labels.astype(dtype)
    return labels


def label_counts_means(values: np.ndarray, ids: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel count and mean of ``values`` per label of ``ids`` (labels 0..n; 0 where a label has no pixel).

    ``values`` and ``ids`` are matching 1-D selections (e.g. ``z[mask]``, ``labels[mask]``).
    """
    counts = np.bincount(ids, minlength=n + 1).astype(float)
    means = np.bincount(ids, weights=values, minlength=n + 1) / np.maximum(counts, 1.0)
    return counts, means


def max_cross(image: np.ndarray) -> np.ndarray:
    """``scipy.ndimage.maximum_filter(image, footprint=generate_binary_structure(2, 1))``: each
    pixel's maximum over itself and its 4 neighbours. Under the library's default
    ``mode='reflect'`` a neighbour beyond the edge is the edge pixel itself, which adds nothing to
    a maximum, so only the neighbours inside count; a maximum is exact in any order."""
    out = image.copy()
    np.maximum(out[1:], image[:-1], out=out[1:])
    np.maximum(out[:-1], image[1:], out=out[:-1])
    np.maximum(out[:, 1:], image[:, :-1], out=out[:, 1:])
    np.maximum(out[:, :-1], image[:, 1:], out=out[:, :-1])
    return out


def dilate_cross(mask: np.ndarray) -> np.ndarray:
    """``scipy.ndimage.binary_dilation(mask)`` (the 4-connected cross, one iteration, pixels
    outside the array False) by four shifted ORs: the library's general loop costs ten times
    more on the small crops the notch test dilates."""
    out = mask.copy()
    out[1:] |= mask[:-1]
    out[:-1] |= mask[1:]
    out[:, 1:] |= mask[:, :-1]
    out[:, :-1] |= mask[:, 1:]
    return out


def _erode_cross(mask: np.ndarray) -> np.ndarray:
    """``scipy.ndimage.binary_erosion(mask)`` (the cross, pixels outside the array False)."""
    out = mask.copy()
    out[1:] &= mask[:-1]
    out[:-1] &= mask[1:]
    out[:, 1:] &= mask[:, :-1]
    out[:, :-1] &= mask[:, 1:]
    out[[0, -1]] = False
    out[:, [0, -1]] = False
    return out


def open_disc(mask: np.ndarray, radius: int, disc: np.ndarray) -> np.ndarray:
    """``scipy.ndimage.binary_opening(mask, structure=disc)`` with ``disc`` ``skimage.morphology.disk(radius)``.

    ``disk(1)`` is the cross and ``disk(2)`` the diamond of radius 2, the cross dilated by itself, so
    an opening by either is ``radius`` erosions by the cross, then ``radius`` dilations by it: the
    same set (erosion and dilation by a Minkowski sum are the successive ones). The library's pixels
    outside the array are False; the successive dilations agree with that inside the array when the
    mask is False on its outermost rows and columns (the eroded set then lies ``radius + 1`` pixels
    inside, and its dilations stay inside). Any other radius, or a mask true on its border, goes to
    the library: its generic loop costs several times more on the small crops of the contact test.
    """
    border = mask[0].any() or mask[-1].any() or mask[:, 0].any() or mask[:, -1].any()
    if radius not in (1, 2) or border or min(mask.shape) < 3:
        return ndimage.binary_opening(mask, structure=disc)
    out = np.asarray(mask, dtype=bool)
    for _ in range(radius):
        out = _erode_cross(out)
    for _ in range(radius):
        out = dilate_cross(out)
    return out


def flood(image: np.ndarray, markers: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Watershed of ``image`` from ``markers`` within ``mask``: the labels of
    ``skimage.segmentation.watershed(image, markers, mask=mask)`` (connectivity 1, no compactness,
    no watershed line), in the markers' dtype.

    ``mask`` must be False on its outermost rows and columns (a crop with a zero border, as the
    segmentation's crops are): the flood then never reaches the array's edge, which is what the
    library's padding by one pixel guarantees, so the padding, and the library's input checks, are
    skipped. The flood is the library's own (``watershed_raveled``, private to scikit-image, so the
    test comparing the two is what notices a release that changes it), run on the same values in
    the same order, with its neighbour offsets (4-connected, sorted by distance as
    ``skimage.morphology._util._offsets_to_raveled_neighbors`` sorts them), so ties are broken as
    there: the labels are the same pixel for pixel (tested in ``tests/test_segmentation.py``).

    Raises
    ------
    ValueError
        If the shapes differ, the array is not 2-D, or ``mask`` is True on its border.
    """
    if image.ndim != 2 or markers.shape != image.shape or mask.shape != image.shape:
        raise ValueError(f"flood needs 2-D arrays of one shape, got {image.shape}, {markers.shape}, {mask.shape}")
    if mask[0].any() or mask[-1].any() or mask[:, 0].any() or mask[:, -1].any():
        raise ValueError("flood needs a mask that is False on its border")
    cols = image.shape[1]
    output = np.ascontiguousarray(markers * mask)
    _watershed_cy.watershed_raveled(
        np.ascontiguousarray(image, dtype=np.float64).ravel(),
        np.flatnonzero(output),
        np.array([-cols, -1, 1, cols], dtype=np.intp),
        mask.astype(np.int8).ravel(),
        np.array([cols, 1], dtype=np.intp),
        0.0,
        output.ravel(),
        False,
    )
    return output


class LabelSets:
    """Disjoint sets of the labels ``1…n``: ``DisjointSet(range(1, n + 1))`` of
    :mod:`scipy.cluster.hierarchy`, with the same root for every label after the same merges.

    scipy's rule, kept here: a merge hangs the smaller set's root under the larger's, and of two
    sets of one size the root inserted first (the lower label) stays root; finding a root halves
    the path. Roots decide how the splitting numbers its merged regions, so the labels it returns
    are those of the library (``tests/test_primitives.py``). Lists indexed by label replace the
    library's dictionaries and its membership check on every lookup.
    """

    __slots__ = ("_parent", "_size")

    def __init__(self, n: int) -> None:
        self._parent = list(range(n + 1))
        self._size = [1] * (n + 1)

    def __getitem__(self, x: int) -> int:
        """Root of ``x``'s set (path halving, as the library's)."""
        parent = self._parent
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    def merge(self, x: int, y: int) -> bool:
        """Merge the sets of ``x`` and ``y``; False when they are one set already."""
        xr, yr = self[x], self[y]
        if xr == yr:
            return False
        size = self._size
        # (size, insertion index) as the library compares them; a label's index is its order.
        if (size[xr], yr) < (size[yr], xr):
            xr, yr = yr, xr
        self._parent[yr] = xr
        size[xr] += size[yr]
        return True

    def roots(self) -> list[int]:
        """The root of every label ``1…n``, in label order."""
        return [self[r] for r in range(1, len(self._parent))]


def majority3(mask: np.ndarray) -> np.ndarray:
    """3 × 3 majority vote of a boolean mask (:func:`scipy.ndimage.median_filter`, size 3,
    ``mode='reflect'``), by nine shifted sums."""
    padded = np.pad(mask.astype(np.uint8), 1, mode="symmetric")
    h, w = mask.shape
    votes = sum(padded[i : i + h, j : j + w] for i in range(3) for j in range(3))
    return votes >= 5


def nonnegative_line_fit(x: np.ndarray, y: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per row, ``min Σ w·(a·x + n − y)²`` over ``a, n ≥ 0``: the weighted least-squares line
    with non-negative slope and intercept, rows along the leading axes, terms along the last.

    The problem is convex, so its optimum is the unconstrained one (the 2 × 2 normal equations)
    when that is feasible, else the better of the boundary's optima (one coefficient zero, the
    other its clamped one-variable fit; both zero when both clamp): the Karush–Kuhn–Tucker
    conditions of Lawson & Hanson, *Solving Least Squares Problems* (1974), ch. 23, enumerated for
    two unknowns. The same optimum as ``scipy.optimize.nnls`` on the design ``sqrt(w)·[x, 1]``
    (``tests/test_primitives.py``), for many rows in one pass and without importing
    ``scipy.optimize`` (~0.2 s CPU of every analysis' start-up, issue 15).

    Parameters
    ----------
    x, y, w : numpy.ndarray
        Abscissae, ordinates and non-negative weights, broadcast against each other; the fit
        runs over the last axis.

    Returns
    -------
    a, n : numpy.ndarray
        Slope and intercept, of the broadcast shape less its last axis.

    Examples
    --------
    >>> a, n = nonnegative_line_fit(np.array([0.0, 1.0, 2.0]), np.array([1.0, 3.0, 5.0]), np.ones(3))
    >>> float(a), float(n)
    (2.0, 1.0)
    """
    sxx, sx1, s11 = np.sum(w * x * x, -1), np.sum(w * x, -1), np.sum(w * np.ones_like(x), -1)
    bx, b1 = np.sum(w * x * y, -1), np.sum(w * y, -1)
    det = sxx * s11 - sx1**2
    with np.errstate(divide="ignore", invalid="ignore"):
        a = (s11 * bx - sx1 * b1) / det
        n = (sxx * b1 - sx1 * bx) / det
        a_only = np.where(sxx > 0, np.maximum(0.0, bx / sxx), 0.0)
        n_only = np.where(s11 > 0, np.maximum(0.0, b1 / s11), 0.0)
    # A rank-deficient design (one distinct abscissa, or x ≡ 0) has no unique interior optimum.
    interior = (det > 1e-13 * sxx * s11) & (a >= 0) & (n >= 0)
    # On the boundary: the better of the two one-coefficient fits (their weighted SSE less Σwy²).
    a_better = (a_only * (a_only * sxx - 2.0 * bx)) <= (n_only * (n_only * s11 - 2.0 * b1))
    a = np.where(interior, a, np.where(a_better, a_only, 0.0))
    n = np.where(interior, n, np.where(a_better, 0.0, n_only))
    return a, n
