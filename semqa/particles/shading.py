"""Directional SE shading: the frame's detector direction, and ridge lines that are no contacts.

With a side-mounted (Everhart–Thornley) detector, a surface facing the detector is brighter than
one facing away (tilt and shadowing contrast: Reimer, *Scanning Electron Microscopy*, 2nd ed.,
1998, § 6.2.1), so an SE frame looks lit from one side. That direction tells the two kinds of
line that the distance-map split and the contact cuts (:mod:`semqa.particles.contacts`) cut a
part along apart (:func:`merge_ridges`):

* a **ridge** of one particle (the edge between two facets of a crystal, both sloping away from
  it) is brighter on the side that faces the detector: brightness steps *up* along the detector
  direction ``u``, as it rises across any convex body;
* a **contact** of two particles is a valley (each particle slopes down towards its own outline,
  where they meet), so brightness steps *down* along ``u`` there, or does not step at all (an
  upper particle over the far flank of a lower one). No two convex particles meet in a ridge.

The direction is read where the surface normal is known from the image alone: at a particle's
outline the surface slopes outwards, along the outline's normal (the occluding-contour
constraint of shape from shading, used to find the illuminant direction by Pentland, *J. Opt.
Soc. Am.* 72, 1982, and Zheng & Chellappa, *IEEE TPAMI* 13, 1991). Per particle, the band just
inside its outline is fitted as ``level + g · n_out``; the particles' directions of ``g`` are
tested for a common direction (Rayleigh test), and ``A = 2 g · u`` is the brightness difference
between an edge facing the detector and one facing away. Edge brightening, uniform over the
normals, and each particle's own yield only move the level; an illumination gradient across the
frame moves ``g`` by that gradient times the particle's radius, so a plane fitted to the levels
over the particles' positions is removed and the outlines fitted again (:func:`frame_shading`).
The same direction says that a face turned away from the detector may be dimmer than half its
particle's level: :mod:`semqa.particles.segmentation` attaches such faces in a lit frame.

A step is attributed to tilt only where it cannot be a difference of two particles' yields:
the frame's shading is used when ``A`` exceeds twice the sd of the difference of two particles'
levels (``2 · sqrt(2)`` times their spread, a robust sd about a plane across the frame, which
takes out uneven illumination), measured on at least a dozen particles. BSE, rim-lit SE
(in-lens detectors) and dark-field frames have no such direction, and nothing here changes them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage, special

from semqa.particles.contacts import mad_sd
from semqa.particles.measure import border_labels
from semqa.particles.primitives import LabelSets, max_filter_square, median

#: Least pixels of a particle's outline band for its shading fit (a 3 px-wide band of a disc of about 2 px radius).
_MIN_BAND_PX = 20
#: Least particles for a frame's shading: a direction and a spread of levels from fewer (a plane
#: of uneven illumination takes three of their degrees of freedom) are not to be relied on.
_MIN_PARTICLES = 12


@dataclass(frozen=True)
class Shading:
    """The frame's directional shading: ``u`` the unit direction (x, y) along which brightness
    rises across a particle, ``amplitude`` the brightness difference between an edge facing
    ``u`` and one facing away (units of the image it was measured on), ``level_sd`` the robust sd
    of the particles' own levels, ``n`` the particles measured and ``rayleigh_p`` the test's p."""

    u: tuple[float, float]
    amplitude: float
    level_sd: float
    n: int
    rayleigh_p: float


@dataclass(frozen=True)
class OutlineBand:
    """The pixels just inside the particles' outlines (see :func:`outline_band`): their ``rows``
    and ``cols``, particle ``ids`` (1…n), outward normals ``ox``, ``oy``, and ``n``."""

    rows: np.ndarray
    cols: np.ndarray
    ids: np.ndarray
    ox: np.ndarray
    oy: np.ndarray
    n: int


def outline_band(mask: np.ndarray, band_px: float) -> OutlineBand:
    """The band up to ``band_px`` px inside the outlines of ``mask``'s particles (components not
    cut by the frame), with the outline's outward normal at each pixel: that of the outline
    smoothed over 2 px (the digitised outline's steps are noise at that scale)."""
    lab, n = ndimage.label(mask)
    gy, gx = np.gradient(ndimage.gaussian_filter(mask.astype(np.float32), 2.0))
    norm = np.hypot(gx, gy)
    # Within band_px of the background in a square neighbourhood (separable, a fraction of a
    # distance map's cost): the band's depth varies by up to √2 with the outline's direction,
    # alike on every side of a particle, so the fit on the normal is unbiased.
    band = mask & max_filter_square(~mask, 2 * math.ceil(band_px) + 1) & (norm > 1e-3)
    if n:
        band &= ~np.isin(lab, border_labels(lab))
    rows, cols = np.nonzero(band)
    return OutlineBand(rows, cols, lab[band], -gx[band] / norm[band], -gy[band] / norm[band], n)


def outline_fits(band: OutlineBand, values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per particle of ``band``, the least-squares fit of ``values`` (one per band pixel) on the
    outline's outward normal: ``(g, level, centre)``, ``g`` and ``centre`` (the band's centroid)
    of shape ``(m, 2)`` (x, y), for the ``m`` particles whose band holds at least 20 pixels and
    whose normals span both directions."""
    ids, ox, oy = band.ids, band.ox, band.oy
    v = values.astype(np.float64)

    def total(w: np.ndarray) -> np.ndarray:
        return np.bincount(ids, weights=w, minlength=band.n + 1)

    count = total(np.ones_like(v))
    safe = np.maximum(count, 1.0)
    mx, my, mv = total(ox) / safe, total(oy) / safe, total(v) / safe
    dx, dy, dv = ox - mx[ids], oy - my[ids], v - mv[ids]
    sxx, syy, sxy, sxv, syv = total(dx * dx), total(dy * dy), total(dx * dy), total(dx * dv), total(dy * dv)
    det = sxx * syy - sxy**2
    # A closed outline's normals cover every direction: det ≈ count² / 4 for a disc.
    good = (count >= _MIN_BAND_PX) & (det > 0.01 * count**2)
    good[0] = False
    k = np.flatnonzero(good)
    g = np.column_stack([(syy[k] * sxv[k] - sxy[k] * syv[k]) / det[k], (sxx[k] * syv[k] - sxy[k] * sxv[k]) / det[k]])
    centre = np.column_stack([total(band.cols.astype(np.float64))[k], total(band.rows.astype(np.float64))[k]]) / count[k, None]
    return g, mv[k], centre


def frame_shading(mask: np.ndarray, values: np.ndarray, band_px: float, alpha: float) -> Shading | None:
    """The frame's directional shading from its particles' outlines (:func:`outline_fits`), or
    None where there is none to rely on: fewer than ``_MIN_PARTICLES`` particles, no common
    direction at level ``alpha`` (Rayleigh test, ``p ≈ exp(−n R̄²)``: Mardia & Jupp,
    *Directional Statistics*, Wiley 2000, § 6.3.1), or an amplitude within twice the sd of two
    particles' level difference (see the module docstring).

    Uneven illumination moves the levels smoothly across the frame, and it tilts each particle's
    fit by its gradient times the particle's radius (an outline's normals point along its
    positions): a plane fitted to the particles' levels over their positions is removed from
    ``values`` and the outlines fitted again, so neither the direction nor the spread of the
    levels holds it."""
    band = outline_band(mask, band_px)
    on_band = values[band.rows, band.cols].astype(np.float64)
    g, level, centre = outline_fits(band, on_band)
    n = int(g.shape[0])
    if n < _MIN_PARTICLES:
        return None
    design = np.column_stack([np.ones(n), centre])
    c0, cx, cy = np.linalg.lstsq(design, level, rcond=None)[0]
    g, level, _ = outline_fits(band, on_band - (c0 + cx * band.cols + cy * band.rows))
    n = int(g.shape[0])
    unit = g / np.maximum(np.hypot(g[:, 0], g[:, 1]), 1e-12)[:, None]
    resultant = unit.sum(axis=0)
    r = float(np.hypot(*resultant))
    p = math.exp(-(r * r) / n)
    if p >= alpha or r == 0.0:
        return None
    u = resultant / r
    amplitude = 2.0 * float(median(g @ u))
    # The plane took 3 of the n levels' degrees of freedom.
    level_sd = mad_sd(level) * math.sqrt(n / (n - 3))
    if amplitude <= 2.0 * math.sqrt(2.0) * level_sd:
        return None
    return Shading((float(u[0]), float(u[1])), amplitude, level_sd, n, p)


def _ridge_z(is_a: np.ndarray, is_b: np.ndarray, values: np.ndarray, shading: Shading, band_px: float, noise_sd: float) -> float | None:
    """Evidence, in noise sds, that the edge between pieces ``a`` and ``b`` is a ridge (see
    :func:`merge_ridges`), or None where nothing along it faces the detector."""
    to_b, near_b = ndimage.distance_transform_edt(~is_b, return_indices=True)
    to_a, near_a = ndimage.distance_transform_edt(~is_a, return_indices=True)
    side_a = is_a & (to_b >= 1.5) & (to_b <= band_px)
    side_b = is_b & (to_a >= 1.5) & (to_a <= band_px)
    # The line's local normal, from a to b: from a pixel of a to its nearest pixel of b, and from
    # a pixel of b's nearest pixel of a to it.
    rows, cols = np.indices(is_a.shape)
    dy = np.where(is_a, near_b[0] - rows, rows - near_a[0])
    dx = np.where(is_a, near_b[1] - cols, cols - near_a[1])
    facing = (dx * shading.u[0] + dy * shading.u[1]) / np.maximum(np.hypot(dx, dy), 1e-12)
    total, var = 0.0, 0.0
    for sign in (1.0, -1.0):
        on_a, on_b = side_a & (sign * facing >= 0.5), side_b & (sign * facing >= 0.5)
        na, nb = int(np.count_nonzero(on_a)), int(np.count_nonzero(on_b))
        if na < 5 or nb < 5:
            continue
        step = float(values[on_b].mean() - values[on_a].mean())
        mean_facing = float(np.abs(np.concatenate([facing[on_a], facing[on_b]])).mean())
        # The step, signed along u, beyond half the ridge's expected step A · |n·u|.
        excess = sign * step - 0.5 * shading.amplitude * mean_facing
        if excess <= 0.0:
            return -math.inf  # a stretch facing the detector without a ridge's step: no ridge
        total += excess
        var += noise_sd**2 * (1.0 / na + 1.0 / nb)
    return total / math.sqrt(var) if var > 0 else None


def merge_ridges(parts: np.ndarray, values: np.ndarray, shading: Shading, band_px: float, noise_sd: float, alpha: float) -> np.ndarray:
    """Merge neighbouring pieces of one part (a crop, labels ``1…n``) whose common edge is a ridge.

    Along the edge between pieces ``a`` and ``b``, each side's pixels 1.5 to ``band_px`` px from
    the other (past the edge's own blur) are grouped by the edge's local normal ``n`` (from a to
    b): the stretches facing the detector (``n·u ≥ ½``) and facing away (``n·u ≤ −½``); a stretch
    lit edge-on (within 60° of ``u``'s normal) shows no tilt step and is not judged. In each
    stretch the step ``mean_b − mean_a``, signed along ``u``, is about ``+A·|n·u|`` across a
    ridge, ``−A·|n·u|`` across a valley and 0 without a tilt step. A pair is merged when every
    stretch's signed step exceeds half the ridge's (midway between no step and a ridge) and their
    summed excess does so by more than ``−Φ⁻¹(alpha)`` sds of the noise of the means
    (``noise_sd`` per pixel, independent pixels assumed). Only pairs of parts each larger than a
    disc of radius ``band_px`` are tested: the faces along the line must be resolved.
    """
    n = int(parts.max())
    if n < 2:
        return parts
    pairs = set()
    for axis in (0, 1):
        head, tail = parts.take(np.arange(parts.shape[axis] - 1), axis=axis), parts.take(np.arange(1, parts.shape[axis]), axis=axis)
        cross = (head != tail) & (head > 0) & (tail > 0)
        lo, hi = np.minimum(head[cross], tail[cross]), np.maximum(head[cross], tail[cross])
        pairs.update(zip(lo.tolist(), hi.tolist()))
    z_alpha = -float(special.ndtri(alpha))
    area = np.bincount(parts.ravel(), minlength=n + 1)
    # A part within a disc of the band's radius is band throughout: its mean is the whole small
    # particle's brightness, not that of a face along the line, and tells nothing of a ridge.
    resolved = area >= math.pi * band_px**2
    groups = LabelSets(n)
    for a, b in sorted(pairs):
        if not (resolved[a] and resolved[b]):
            continue
        z = _ridge_z(parts == a, parts == b, values, shading, band_px, noise_sd)
        if z is not None and z > z_alpha:
            groups.merge(a, b)
    _, new_ids = np.unique(groups.roots(), return_inverse=True)
    return np.concatenate([[0], new_ids + 1])[parts]
