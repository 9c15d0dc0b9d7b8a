"""Splitting touching particles along the intensity edges of their contact lines.

Where particles overlap, or touch along a wide front, the union's distance map has no
maximum of its own for each of them (:func:`semqa.particles.segmentation` splits necks only).
Their contact line still shows in the intensity: in SE images the edge effect brightens the
upper particle's visible outline (Reimer, *Scanning Electron Microscopy*, 2nd ed., 1998,
§ 4.2.2) and in SE or BSE images two particles differ in yield, a step. Both are ridges of the
gradient magnitude, which is what the "intensity" declumping of CellProfiler's
IdentifyPrimaryObjects watersheds on (Carpenter et al., *Genome Biol.* 7, R100, 2006).

Here a part is cut only on evidence, judged against the frame's own gradient noise:

1. **Seeds**: the part's calm pixels, whose gradient magnitude is below the part's median
   gradient plus ``k`` noise sds (smooth shading, as on a dome, is calm; an edge is not),
   opened by a disc of radius σ (σ the gradient scale: the noise is correlated over about that
   width, and its speckle would leave threads and false necks), split at their necks (a contact
   line often stops short of the outline), in pieces at least as large as a disc of radius 2σ.
2. **Watershed** of the gradient magnitude from the seeds (Beucher & Meyer 1993): the lines
   run along the gradient ridges.
3. **Keep a line** only where it is an edge: the mean ridge (white top-hat of the gradient)
   over its L pixels deeper than 3σ inside the part exceeds the higher of its two sides' levels
   by ``z`` sds of such a mean, ``z`` set over all the lines tested in the frame by the
   Benjamini–Hochberg rule at the false-detection level (:func:`line_threshold_fdr`): in a frame
   without contacts any line is kept with that probability at most (the per-frame budget), and
   in an agglomerate, where most lines are contacts, the expected share of false cuts among the
   cuts kept is at most that level. The gradient noise is correlated over about ``2 σ``
   along a line, so a mean of L pixels has the sd of about ``L / (2 σ)`` independent ones. The
   sides' level is the ridge's local maximum (the watershed puts its lines through local
   maxima). Lines that fail are merged back (one pass, so a merge does not depend on the order
   of the pairs); :mod:`semqa.particles.segmentation` then asks for a notch at each end.

The gradient noise sd is measured on the frame's substrate (:func:`gradient_noise_sd`), so
the test counts the substrate texture and correlated noise as the null, whatever the dose.
"""

from __future__ import annotations

from functools import lru_cache
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from scipy.cluster.hierarchy import DisjointSet
from scipy import special
from skimage import morphology

from semqa.particles.primitives import flood, median, open_disc

# Median of a Rayleigh variable of unit per-component sd: sqrt(2 ln 2). The gradient magnitude
# of isotropic Gaussian noise is Rayleigh distributed (two independent derivative components).
_RAYLEIGH_MEDIAN = math.sqrt(2.0 * math.log(2.0))
# sd of a Rayleigh variable of unit per-component sd: sqrt((4 - π) / 2).
_RAYLEIGH_SD = math.sqrt((4.0 - math.pi) / 2.0)


def gradient_noise_sd(grad: np.ndarray, substrate: np.ndarray) -> float | None:
    """Per-component noise sd of a gradient-magnitude image, from its median over ``substrate``.

    Parameters
    ----------
    grad : numpy.ndarray
        Gaussian gradient magnitude of the frame.
    substrate : numpy.ndarray
        Boolean mask of pixels without particles.

    Returns
    -------
    float or None
        ``median / sqrt(2 ln 2)`` (the Rayleigh median), None when no substrate pixel is left.
    """
    values = grad[::2, ::2][substrate[::2, ::2]]
    if values.size == 0:
        return None
    return float(median(values)) / _RAYLEIGH_MEDIAN


@dataclass(frozen=True)
class ContactCandidates:
    """The pieces of one part and the lines between them, before the line test.

    ``regions``: labels 1…n of the pieces (watershed of the gradient from the seeds);
    ``a``, ``b``: the neighbouring pieces of each line; ``z``: each line's excess of ridge over
    its sides' level in sds of a mean of its length (−inf for a line without deep pixels).
    """

    regions: np.ndarray
    a: np.ndarray
    b: np.ndarray
    z: np.ndarray

    def cut(self, z_min: float) -> np.ndarray:
        """Labels of the pieces after merging every line with ``z ≤ z_min`` (one pass, so the
        result does not depend on the order of the lines)."""
        n = int(self.regions.max())
        groups = DisjointSet(range(1, n + 1))
        for a, b, z in zip(self.a, self.b, self.z):
            if z <= z_min:
                groups.merge(int(a), int(b))
        _, new_ids = np.unique([groups[r] for r in range(1, n + 1)], return_inverse=True)
        return np.concatenate([[0], new_ids + 1])[self.regions]


def line_threshold(n_lines: int, false_detections: float) -> float:
    """z a line must exceed so that a frame of ``n_lines`` lines without contacts keeps on
    average ``false_detections`` of them: the Gaussian upper quantile at ``false_detections / n_lines``
    (a Bonferroni budget per frame, as the detection's; a mean of many pixels is near Gaussian)."""
    return float(-special.ndtri(false_detections / max(n_lines, 1)))  # scipy.stats.norm.isf, without its import cost


def line_threshold_fdr(z: np.ndarray, false_detections: float) -> float:
    """z a line must exceed to be kept by the Benjamini–Hochberg step-up rule at level
    ``false_detections`` over the lines ``z`` (finite values; Benjamini & Hochberg, *J. R. Stat.
    Soc. B* 57, 1995): the expected share of false cuts among the cuts kept is at most that level.

    In a frame without contacts every line is null, and the rule then keeps any line with
    probability at most ``false_detections``: the guarantee of the Bonferroni budget
    (:func:`line_threshold`). In an agglomerate most lines are real contacts, and the rule admits
    the weaker ones that a per-frame budget spent on hundreds of lines would reject.
    """
    z = np.sort(np.asarray(z, dtype=float)[np.isfinite(z)])[::-1]
    if z.size == 0:
        return math.inf
    p = special.ndtr(-z)  # one-sided Gaussian upper tail, ascending as z descends
    passed = np.flatnonzero(p <= false_detections * np.arange(1, z.size + 1) / z.size)
    if passed.size == 0:
        return float(z[0])  # nothing exceeds its own value: no line kept
    k = int(passed[-1])
    # Lines are kept when z > z_min: the next lower z (or below all) is the threshold.
    return float(z[k + 1]) if k + 1 < z.size else -math.inf


@lru_cache(maxsize=8)
def _disc(radius: int) -> np.ndarray:
    """``skimage.morphology.disk(radius)`` as a read-only boolean array, built once per radius, not once per part."""
    disc = morphology.disk(radius).astype(bool)
    disc.flags.writeable = False
    return disc


def contact_candidates(
    own: np.ndarray,
    grad: np.ndarray,
    noise_sd: float,
    sigma_px: float,
    k: float,
    split_necks: Callable[[np.ndarray], np.ndarray],
) -> ContactCandidates | None:
    """Seeds, pieces and candidate contact lines of one particle mask (a crop).

    Parameters
    ----------
    own : numpy.ndarray
        Boolean mask of one part, with a zero border.
    grad : numpy.ndarray
        Gaussian gradient magnitude (scale ``sigma_px``) on the same crop.
    noise_sd : float
        Per-component noise sd of ``grad`` (:func:`gradient_noise_sd`).
    sigma_px : float
        Scale of the gradient, px.
    k : float
        Margin, in noise sds, of a calm pixel's gradient over the part's median.
    split_necks : callable
        Labels a mask, split at its necks (the distance-map merge tree of
        :mod:`semqa.particles.segmentation`): a contact line that stops short of the outline
        leaves the calm pixels of its two particles joined by a neck.

    Returns
    -------
    ContactCandidates or None
        None when the part has fewer than two seeds (it stays whole).
    """
    min_area = math.pi * (2.0 * sigma_px) ** 2
    values = grad[own]
    if values.size < 2.0 * min_area:
        return None  # too small to hold two seeds
    # The outline's own edge reaches exp(-d²/2σ²) of its peak at a distance d inside: below 1 %
    # beyond 3σ, so only line pixels that deep are evidence of a contact.
    deep = ndimage.distance_transform_edt(own) > 3.0 * sigma_px
    if not deep.any():
        return None  # no line could carry evidence
    calm = own & (grad < median(values) + k * _RAYLEIGH_SD * noise_sd)
    # Opened by a disc of radius σ (rounded up): noise speckle (correlated over about that width) leaves
    # holes and threads in the calm pixels that would make false necks.
    radius = math.ceil(sigma_px)
    calm = open_disc(calm, radius, _disc(radius))
    seeds = split_necks(calm)
    n = int(seeds.max())
    if n < 2:
        return None
    areas = np.bincount(seeds.ravel(), minlength=n + 1)
    keep = areas >= min_area
    keep[0] = False
    if keep.sum() < 2:
        return None
    renumber = np.cumsum(keep) * keep
    seeds = renumber[seeds]
    n = int(renumber.max())
    regions = flood(grad, seeds, own)  # own has a zero border
    # The line test reads the gradient's ridges only: its white top-hat over a window of 4σ
    # (an edge's gradient profile is about 2σ wide; smooth shading varies over much more, and is removed).
    width = 2 * math.ceil(2.0 * sigma_px) + 1
    ridge = grad - ndimage.grey_opening(grad, size=(width, width))
    # Sides' levels: the median over each seed (its calm interior) of the ridge's maximum over a
    # pixel and its 4 neighbours. A watershed line runs through the highest of the pixels across
    # it, so in noise alone its values are such local maxima, not typical pixels: the maximum
    # filter gives the null that selection.
    inside = seeds > 0
    local_max = ndimage.maximum_filter(ridge, footprint=ndimage.generate_binary_structure(2, 1))
    level = ndimage.median(local_max[inside], seeds[inside], index=np.arange(1, n + 1))
    level = np.concatenate([[0.0], np.asarray(level, dtype=float)])
    lo_parts, hi_parts, g_parts, deep_parts = [], [], [], []
    for axis in (0, 1):
        head, tail = np.arange(own.shape[axis] - 1), np.arange(1, own.shape[axis])
        a, b = regions.take(head, axis=axis), regions.take(tail, axis=axis)
        cross = (a != b) & (a > 0) & (b > 0)
        lo_parts.append(np.minimum(a[cross], b[cross]).astype(np.int64))
        hi_parts.append(np.maximum(a[cross], b[cross]).astype(np.int64))
        g_parts.append(np.maximum(ridge.take(head, axis=axis)[cross], ridge.take(tail, axis=axis)[cross]))
        deep_parts.append(deep.take(head, axis=axis)[cross] & deep.take(tail, axis=axis)[cross])
    lo, hi = np.concatenate(lo_parts), np.concatenate(hi_parts)
    g, is_deep = np.concatenate(g_parts), np.concatenate(deep_parts)
    codes, inverse = np.unique(lo * (n + 1) + hi, return_inverse=True)
    # Each crossing is counted along the axes the line is not parallel to, so a line of L
    # pixels gives about L deep crossings: counts approximate L.
    counts = np.bincount(inverse, weights=is_deep, minlength=codes.size)
    mean = np.bincount(inverse, weights=g * is_deep, minlength=codes.size) / np.maximum(counts, 1.0)
    ra, rb = np.divmod(codes, n + 1)
    independent = np.maximum(counts / (2.0 * sigma_px), 1.0)
    z = (mean - np.maximum(level[ra], level[rb])) / (_RAYLEIGH_SD * noise_sd / np.sqrt(independent))
    # A line without deep pixels carries no evidence.
    z = np.where(counts > 0, z, -np.inf)
    return ContactCandidates(regions, ra, rb, z)
