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

4. **A textured part is its own null.** Inside a particle its surface texture is structure the
   substrate lacks, and a watershed line is the highest path through it: a strong selection,
   which shattered large textured particles along their texture (sweep seed 13, `synth` 100 px
   at 300 e⁻/px: 31 parts where the distance map alone gives 11). So a part's clear interior
   (deep pixels farther than 2σ from every line) is compared with the substrate by one
   statistic, the long-run variance of the ridge's local maxima (:func:`long_run_variance`,
   contact rims the seeds missed clipped by :func:`winsorized`); where it is larger at the
   level of a Bonferroni budget over the frame's parts (:func:`_is_textured`, a χ² test: in a
   frame of untextured parts one is flagged with probability ``false_detections`` at most), the
   lines' null is measured on the part itself: phase-randomised surrogates of its gradient
   (:func:`_surrogate_lines`: the same spectrum and values, no coherent lines) go through the
   same seeds, flood and line statistic, and their lines give the null's bias per pixel (the
   selection) and the sd of a line's mean (texture and its correlation included). A line's z is
   its excess over that bias in sds of that null, never a weaker test than the substrate's. An
   untextured part keeps the substrate's null, so agglomerates of smooth particles are cut as
   before.
"""

from __future__ import annotations

from functools import lru_cache
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from scipy import special
from skimage import morphology

from semqa.particles.primitives import LabelSets, flood, label_median_mean, max_cross, median, open_disc

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
        groups = LabelSets(n)
        for a, b, z in zip(self.a, self.b, self.z):
            if z <= z_min:
                groups.merge(int(a), int(b))
        _, new_ids = np.unique(groups.roots(), return_inverse=True)
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
    ridge_lrv: Callable[[], float | None],
    texture_alpha: float,
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
    ridge_lrv : callable
        Returns the long-run variance of the ridge on the frame's substrate
        (:func:`ridge_long_run_variance`), or None: no substrate to compare with, every part keeps
        the substrate's null. Called only for a part large enough for the texture test, so the
        caller can compute it on first call (a whole-frame pass that most frames never need).
    texture_alpha : float
        Level at which the part's long-run variance must exceed the substrate's for the part to
        be its own null (:func:`_is_textured`; the caller's per-frame budget over its parts).
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
    seeds, n = _seeds(own, grad, median(values) + k * _RAYLEIGH_SD * noise_sd, sigma_px, split_necks)
    if n < 2:
        return None
    regions = flood(grad, seeds, own)  # own has a zero border
    ridge = ridge_of(grad, sigma_px)
    local_max = ridge_local_max(ridge)
    ra, rb, excess, independent, clear = _line_excess(regions, seeds, n, ridge, local_max, deep, sigma_px)
    substrate_sd = _RAYLEIGH_SD * noise_sd
    bias, sd = 0.0, substrate_sd
    if np.count_nonzero(clear) >= min_area and (lrv := ridge_lrv()) and _is_textured(local_max, clear, lrv, sigma_px, texture_alpha):
        null_excess, null_n = _surrogate_lines(grad, own, deep, sigma_px, k * substrate_sd, split_necks)
        if null_excess.size >= 2:
            # A line's mean excess is bias + noise of variance sd² / (its independent samples):
            # both from the surrogates' lines of every length (weighted least squares).
            b = float(np.average(null_excess, weights=null_n))
            s_hat = math.sqrt(float(np.sum(null_n * (null_excess - b) ** 2)) / (null_excess.size - 1))
            # Never a weaker test than the substrate's null.
            bias, sd = max(b, 0.0), max(s_hat, substrate_sd)
    z = (excess - bias) * np.sqrt(independent) / sd
    return ContactCandidates(regions, ra, rb, z)


def _is_textured(local_max: np.ndarray, clear: np.ndarray, ridge_lrv: float, sigma_px: float, alpha: float) -> bool:
    """Whether the ridge inside a part varies more than on the substrate: the long-run variance
    (:func:`long_run_variance`) of its clear interior exceeds the substrate's ``ridge_lrv`` at
    level ``alpha``. A variance from ν independent Gaussian values is χ²_ν / ν distributed; a MAD
    variance has the information of 0.37 ν of them (the MAD's Gaussian efficiency is 37 %;
    Rousseeuw & Croux, *JASA* 88, 1993), ν the clear area over the squared correlation length.
    The substrate's estimate, over far more pixels, is taken as exact."""
    lrv, ell = long_run_variance(local_max, clear, sigma_px)
    dof = 0.37 * np.count_nonzero(clear) / ell**2
    return lrv / ridge_lrv > float(special.chdtri(dof, alpha)) / dof


def _seeds(
    own: np.ndarray, grad: np.ndarray, calm_below: float, sigma_px: float, split_necks: Callable[[np.ndarray], np.ndarray]
) -> tuple[np.ndarray, int]:
    """The part's seeds (step 1 of the module's rule) and their number: calm pixels (gradient
    below ``calm_below``), opened, split at their necks, pieces at least a disc of radius 2σ."""
    calm = own & (grad < calm_below)
    # Opened by a disc of radius σ (rounded up): noise speckle (correlated over about that width) leaves
    # holes and threads in the calm pixels that would make false necks.
    radius = math.ceil(sigma_px)
    calm = open_disc(calm, radius, _disc(radius))
    seeds = split_necks(calm)
    n = int(seeds.max())
    if n < 2:
        return seeds, n
    areas = np.bincount(seeds.ravel(), minlength=n + 1)
    keep = areas >= math.pi * (2.0 * sigma_px) ** 2
    keep[0] = False
    if keep.sum() < 2:
        return seeds, 0
    renumber = np.cumsum(keep) * keep
    return renumber[seeds], int(renumber.max())


def _line_excess(
    regions: np.ndarray, seeds: np.ndarray, n: int, ridge: np.ndarray, local_max: np.ndarray, deep: np.ndarray, sigma_px: float,
    with_clear: bool = True,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
    """The line statistic of step 3: the neighbouring pieces ``a < b`` of each line, its mean
    ridge over its deep pixels minus the higher of its sides' levels (−inf for a line without
    deep pixels), its number of independent samples, and the part's clear interior (deep pixels
    farther than 2σ from every line: an edge's ridge is about that wide either side of it; None
    with ``with_clear=False``, for the surrogates, whose interior is not tested)."""
    lo_parts, hi_parts, g_parts, deep_parts = [], [], [], []
    on_line = np.zeros(regions.shape, dtype=bool) if with_clear else None
    for axis in (0, 1):
        head, tail = np.arange(regions.shape[axis] - 1), np.arange(1, regions.shape[axis])
        a, b = regions.take(head, axis=axis), regions.take(tail, axis=axis)
        cross = (a != b) & (a > 0) & (b > 0)
        if with_clear:
            # Both pixels of a crossing are line pixels.
            lead = [slice(None)] * 2
            lead[axis] = slice(None, -1)
            on_line[tuple(lead)] |= cross
            lead[axis] = slice(1, None)
            on_line[tuple(lead)] |= cross
        lo_parts.append(np.minimum(a[cross], b[cross]).astype(np.int64))
        hi_parts.append(np.maximum(a[cross], b[cross]).astype(np.int64))
        g_parts.append(np.maximum(ridge.take(head, axis=axis)[cross], ridge.take(tail, axis=axis)[cross]))
        deep_parts.append(deep.take(head, axis=axis)[cross] & deep.take(tail, axis=axis)[cross])
    lo, hi = np.concatenate(lo_parts), np.concatenate(hi_parts)
    g, is_deep = np.concatenate(g_parts), np.concatenate(deep_parts)
    codes, inverse = np.unique(lo * (n + 1) + hi, return_inverse=True)
    ra, rb = np.divmod(codes, n + 1)
    clear = deep & ~ndimage.binary_dilation(on_line, structure=_disc(math.ceil(2.0 * sigma_px))) if with_clear else None
    # Sides' levels: the median over each seed (its calm interior) of the ridge's local maxima
    # (:func:`ridge_local_max`).
    inside = seeds > 0
    level = label_median_mean(local_max[inside], seeds[inside], n)  # ndimage.median of each seed, faster
    level = np.concatenate([[0.0], np.asarray(level, dtype=float)])
    # Each crossing is counted along the axes the line is not parallel to, so a line of L
    # pixels gives about L deep crossings: counts approximate L.
    counts = np.bincount(inverse, weights=is_deep, minlength=codes.size)
    mean = np.bincount(inverse, weights=g * is_deep, minlength=codes.size) / np.maximum(counts, 1.0)
    # The gradient noise is correlated over about 2σ along a line.
    independent = np.maximum(counts / (2.0 * sigma_px), 1.0)
    excess = mean - np.maximum(level[ra], level[rb])
    # A line without deep pixels carries no evidence.
    return ra, rb, np.where(counts > 0, excess, -np.inf), independent, clear


def edge_z(a: np.ndarray, b: np.ndarray, grad: np.ndarray, noise_sd: float, sigma_px: float) -> float:
    """The line statistic of step 3 for the line between two masks ``a`` and ``b`` (a crop, disjoint,
    4-adjacent), in sds of a mean of its length: how far its ridge stands above its sides' levels.

    As :func:`_line_excess`, with the sides' levels read over each mask's clear interior (deep and
    farther than 2σ from the line) instead of a seed's, and the substrate's null sd
    (``_RAYLEIGH_SD × noise_sd``): the test a line inside one part gets, for two masks that the
    distance-map split put in different parts. −inf where the line has no deep pixel (no evidence).
    """
    union = a | b
    deep = ndimage.distance_transform_edt(np.pad(union, 1))[1:-1, 1:-1] > 3.0 * sigma_px
    ridge = ridge_of(grad, sigma_px)
    line = np.zeros(a.shape, dtype=bool)
    values = []
    for axis in (0, 1):
        head, tail = np.arange(a.shape[axis] - 1), np.arange(1, a.shape[axis])
        cross = (a.take(head, axis=axis) & b.take(tail, axis=axis)) | (b.take(head, axis=axis) & a.take(tail, axis=axis))
        both_deep = cross & deep.take(head, axis=axis) & deep.take(tail, axis=axis)
        values.append(np.maximum(ridge.take(head, axis=axis), ridge.take(tail, axis=axis))[both_deep])
        lead = [slice(None)] * 2
        lead[axis] = slice(None, -1)
        line[tuple(lead)] |= cross
        lead[axis] = slice(1, None)
        line[tuple(lead)] |= cross
    g = np.concatenate(values)
    if g.size == 0:
        return -math.inf
    clear = deep & ~ndimage.binary_dilation(line, structure=_disc(math.ceil(2.0 * sigma_px)))
    local_max = ridge_local_max(ridge)
    levels = [float(np.median(local_max[clear & m])) for m in (a, b) if (clear & m).any()]
    if not levels:
        return -math.inf
    independent = max(g.size / (2.0 * sigma_px), 1.0)
    return (float(g.mean()) - max(levels)) * math.sqrt(independent) / (_RAYLEIGH_SD * noise_sd)


def _surrogate_lines(
    grad: np.ndarray, own: np.ndarray, deep: np.ndarray, sigma_px: float, calm_rel: float,
    split_necks: Callable[[np.ndarray], np.ndarray],
) -> tuple[np.ndarray, np.ndarray]:
    """Excess and independent samples (:func:`_line_excess`) of the lines in surrogates of a part's
    gradient: its interior's (``deep``) power spectrum and values, with the Fourier phases
    randomised (amplitude-adjusted Fourier-transform surrogates, Theiler et al., *Physica D* 58,
    1992), a stationary texture of the same correlation and without coherent lines. Each goes
    through the same seeds (calm pixels ``calm_rel`` above its median), flood and line statistic
    as the part, so its lines are the max-ridge paths through the part's own texture: the null of
    the watershed's selection. The whole interior, lines included, gives the values: the
    texture's own ridges are where the watershed puts its lines, and a contact edge among them,
    its phases scattered, only makes the null more conservative."""
    grad = winsorized(grad, deep)
    values = grad[deep]
    centred = np.where(deep, grad - values.mean(), 0.0)
    amplitude = np.abs(np.fft.rfft2(centred))
    ranked = np.sort(values)
    rows, cols = own.shape
    # Reproducible: the draws depend on the part only.
    rng = np.random.default_rng([rows, cols, int(np.count_nonzero(own))])
    out_e, out_n = [], []
    inside_idx = np.arange(int(np.count_nonzero(own)))
    # About 100 null lines fix the bias to a tenth of a line's sd; at most 8 surrogates.
    for _ in range(8):
        if sum(e.size for e in out_e) >= 100:
            break
        phase = np.exp(2j * np.pi * rng.random(amplitude.shape))
        field = np.fft.irfft2(amplitude * phase, s=own.shape)
        # Amplitude adjustment: the surrogate's values on the part replaced, rank for rank, by
        # quantiles of the interior's own values.
        order = np.argsort(field[own], kind="stable")
        adjusted = np.empty(order.size)
        adjusted[order] = ranked[(inside_idx * ranked.size) // order.size]
        surrogate = np.zeros_like(grad)
        surrogate[own] = adjusted
        seeds, n = _seeds(own, surrogate, median(adjusted) + calm_rel, sigma_px, split_necks)
        if n < 2:
            continue
        regions = flood(surrogate, seeds, own)
        ridge = ridge_of(surrogate, sigma_px)
        _, _, excess, independent, _ = _line_excess(regions, seeds, n, ridge, ridge_local_max(ridge), deep, sigma_px, with_clear=False)
        has = np.isfinite(excess)
        out_e.append(excess[has])
        out_n.append(independent[has])
    if not out_e:
        return np.empty(0), np.empty(0)
    return np.concatenate(out_e), np.concatenate(out_n)


def ridge_of(grad: np.ndarray, sigma_px: float) -> np.ndarray:
    """The gradient's ridges: its white top-hat over a window of about 4σ (an edge's gradient
    profile is about 2σ wide; smooth shading varies over much more, and is removed)."""
    width = 2 * math.ceil(2.0 * sigma_px) + 1
    return grad - ndimage.grey_opening(grad, size=(width, width))


def ridge_local_max(ridge: np.ndarray) -> np.ndarray:
    """The ridge's maximum over a pixel and its 4 neighbours. A watershed line runs through the
    highest of the pixels across it, so in noise alone its values are such local maxima, not
    typical pixels: the maximum filter gives the null that selection."""
    return max_cross(ridge)  # ndimage.maximum_filter with the cross footprint, faster


def mad_sd(values: np.ndarray) -> float:
    """sd from the median absolute deviation, 1.4826 · MAD (consistent for a Gaussian; Rousseeuw &
    Croux, *JASA* 88, 1993): robust to the few contact edges or outliers among the values."""
    return 1.4826 * float(median(np.abs(values - median(values))))


def winsorized(values: np.ndarray, where: np.ndarray) -> np.ndarray:
    """``values`` clipped at 3 robust sds (:func:`mad_sd` over ``where``) above their median
    there. A gradient magnitude of Gaussian texture is about Rayleigh distributed and exceeds that
    with probability below 1 %; a contact rim or step the seeds did not separate lies far beyond
    it, and clipped it no longer dominates the texture's correlation or spectrum."""
    inside = values[where]
    return np.minimum(values, float(median(inside)) + 3.0 * mad_sd(inside))


def ridge_long_run_variance(grad: np.ndarray, substrate: np.ndarray, sigma_px: float) -> float | None:
    """:func:`long_run_variance` of the ridge's local maxima (:func:`ridge_local_max`) over the
    substrate: the statistic a part's interior is compared with (:func:`_is_textured`), in the
    frame's noise alone. None when no substrate pixel is left."""
    if np.count_nonzero(substrate) < 2:
        return None
    return long_run_variance(ridge_local_max(ridge_of(grad, sigma_px)), substrate, sigma_px)[0]


def long_run_variance(values: np.ndarray, where: np.ndarray, sigma_px: float) -> tuple[float, float]:
    """Variance of a mean of L pixels of ``values`` along a line, times L, and the correlation
    length it uses: the robust variance (:func:`mad_sd`) times :func:`correlation_length` of
    the :func:`winsorized` values over ``where``, lags up to 8σ."""
    ell = correlation_length(winsorized(values, where), where, math.ceil(8.0 * sigma_px))
    return mad_sd(values[where]) ** 2 * ell, ell


def correlation_length(values: np.ndarray, where: np.ndarray, max_lag: int) -> float:
    """Integral correlation length along a line, px: ``1 + 2 Σ ρ(k)`` over the lags k ≥ 1 up to
    the first at which the autocorrelation ρ (pairs of ``where`` pixels k apart along either axis)
    is no longer positive, at most ``max_lag``. A mean of L correlated pixels has the variance of
    about L / that many independent ones (the effective sample size; e.g. von Storch & Zwiers,
    *Statistical Analysis in Climate Research*, 1999, § 17.1)."""
    x = np.where(where, values - values[where].mean(), 0.0)
    var = float(np.mean(x[where] ** 2))
    if var <= 0:
        return 1.0
    total = 1.0
    for k in range(1, max_lag + 1):
        num = float((x[k:] * x[:-k]).sum() + (x[:, k:] * x[:, :-k]).sum())
        pairs = float((where[k:] & where[:-k]).sum() + (where[:, k:] & where[:, :-k]).sum())
        if pairs == 0:
            break
        rho = num / pairs / var
        if rho <= 0:
            break
        total += 2.0 * rho
    return total
