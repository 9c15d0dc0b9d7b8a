"""The typical particle diameter of a foreground mask: a particle's, also inside clusters.

The learned segmenter resamples every image so that its typical particle reaches the network
at its working size (:func:`semqa.particles.segmentation.estimate_particle_diameter`, at
inference and in training), so that size must be a particle's
diameter. The ECD of a connected component is a particle's only when the component is one
particle; on an agglomerated frame the components are clusters and their ECD is several times
a particle's (125 and 157 px for particles of median ECD 24 and 40 px, issue #14).

**Local thickness** (Hildebrand & Rüegsegger, *J. Microsc.* 185, 1997; BoneJ "Local
Thickness"): the thickness at a foreground pixel is the diameter of the largest disc that lies
inside the foreground and covers it; the area above a thickness ``t`` is the opening by a disc
of diameter ``t`` (Matheron's granulometry; Serra, *Image Analysis and Mathematical
Morphology*, 1982, ch. X). Touching or overlapping particles meet in necks narrower than
either, so each particle of a cluster keeps its own thickness. Per component the area-weighted
median thickness ``T`` is read:

* a disc: ``T`` is its diameter, its ECD;
* an ellipse of aspect ``r``: ``T`` is its minor axis ``2b`` within 1.5 % for ``r ≤ 2.5`` and
  within 3 % at ``r = 3.5`` (the discs centred on the major axis shrink slowly towards the
  tips; ``tests/test_particle_scale.py`` measures it on drawn ellipses, ``b`` = 40 px), while
  its ECD is ``2b·sqrt(r)``;
* a cluster of particles: ``T`` is its particles' (area-weighted median) width, far below the
  cluster's own width.

The cluster's width is read from its second moments: the minor axis ``m`` of the ellipse of
the same moments (``4·sqrt`` of the smaller eigenvalue of the pixel-coordinate covariance) is
``2b`` for an ellipse. A convex particle is nearly as thick as its moments say: ``T / m`` is 1
for a disc, ≥ 0.976 for ellipses of aspect ≤ 3.5, 0.866 for any rectangle and 0.705 for the
equilateral triangle, the least of the convex shapes measured; a compact cluster of three
touching equal discs has 0.544, of four 0.472 (:data:`SINGLE_RATIO`). So a component with
``T ≥ 0.7·m`` (less a pixel either side, the notch of one noise pixel on the outline) is one
particle, and its ECD ``E`` is the particle's, however elongated or faceted; a thinner one is
a cluster of particles of width ``T``, read as ``E · T / m``. That is ``T · sqrt(r_c)``
(``r_c`` the cluster's moment aspect, ``E ≈ m·sqrt(r_c)``): the particles' width ``T`` in a
compact cluster of round particles (0.94 ``D`` for the three or four discs of diameter ``D``
above), their ECD ``T·sqrt(r)`` in a cluster of parallel particles of aspect ``r``, and their
width, ``1/sqrt(r)`` of their ECD, in a compact cluster of elongated particles of random
orientation. For resampling, that width is what matters (the network resolves a particle
across it, and a strip of width ``w`` is lost once resampling blurs it by about ``w/4``), within a factor ``sqrt(r)`` (1.9
at ``r = 3.5``) of the ECD, where the cluster's ECD is ``sqrt(k)`` times it (5–6 on
agglomerates). A pair or a chain of particles has the thickness of its moments (``T / m`` =
0.98 for two touching discs) and stays one particle: moments and thickness cannot tell it from
an elongated particle. Components thinner than :data:`MIN_THICKNESS_PX` for the test, or
whose particles would be, are not resolved and keep their ECD (the estimate before).

The frame's diameter is the area-weighted median of the components' particle diameters (each
component weighted by its area), the meaning of the earlier estimate (the area-weighted median
component ECD), which it equals on a frame of isolated particles.

Cost: a fixed number of Euclidean distance transforms of the (2 × 2 block-mean) mask: the
distance map, the single-particle test of every component at once, and :data:`BISECTIONS`
steps in ``log t`` for the clusters' ``T`` (the bracket then interpolated in the covered
share); 73–92 ms CPU on a 768² frame (``benchmarks/bench_size_estimate.py``).
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

from semqa.particles.primitives import dilate_cross, majority3

# Components below this area (px) are digitisation specks, not particles: a 2 × 2 block (as
# the component-ECD estimate before it).
MIN_COMPONENT_PX = 4
# Bisection steps in log thickness between MIN_THICKNESS_PX and the cluster's test width: a
# bracket of (60 / 3)^(1/8) = 1.45 at most on a 768² frame's 2 × 2 grid, then interpolated.
BISECTIONS = 3
# The least thickness the mask resolves, px: a disc of diameter t reaches the centres of the
# outermost pixels from t/2 − 1/2, so below 3 px (reach < 1 px) the outline pixels of a
# shape two pixels wide are never covered and the thickness reads 1.
MIN_THICKNESS_PX = 3.0
# The least T / m of a convex particle among the disc (1), ellipses of aspect ≤ 3.5 (≥ 0.976),
# the regular hexagon (0.946), any rectangle (0.866: width s, moment width 4s/√12) and the
# equilateral triangle (0.705), measured on drawn shapes (the triangle, square and three discs in tests/test_particle_scale.py); a
# compact cluster of three touching equal discs has 0.544, of four 0.472. A component at least
# this thick for its moments is one particle.
SINGLE_RATIO = 0.7


def _covered_share(dist: np.ndarray, lab: np.ndarray, areas: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Per component, the share of its pixels whose local thickness is at least ``t[label]``.

    A pixel's thickness is at least ``t`` when it lies within ``t/2 − 1/2`` of a pixel whose
    distance to the substrate is at least ``t/2 + 1/2`` (pixel centres: a disc of diameter
    ``t`` inside the shape has its centre at least ``t/2`` from the outline, i.e. ``t/2 + 1/2``
    from the centre of the nearest substrate pixel, and reaches the centres of the outermost
    pixels at ``t/2 − 1/2``). One distance transform of the centres' complement serves every
    component's own ``t``; a centre of another component is never nearer than the substrate
    between them, so it only ever covers a pixel that its own component's disc would not
    when a small component lies within ``t/2`` of a much thicker one (a slight overestimate).
    """
    tmap = t[lab]
    centres = (lab > 0) & (dist >= 0.5 * tmap + 0.5)
    if not centres.any():
        return np.zeros(areas.size)
    reach = ndimage.distance_transform_edt(~centres)
    covered = (lab > 0) & (reach <= 0.5 * tmap - 0.5 + 1e-6)
    return np.bincount(lab.ravel(), weights=covered.ravel(), minlength=areas.size) / np.maximum(areas, 1.0)


def _moment_minor_axis(lab: np.ndarray, n: int, areas: np.ndarray) -> np.ndarray:
    """Minor axis (px) of each component's ellipse of the same second moments (pixels as unit squares)."""
    yy, xx = np.indices(lab.shape, dtype=np.float64)
    flat = lab.ravel()

    def total(values: np.ndarray) -> np.ndarray:
        return np.bincount(flat, weights=values.ravel(), minlength=n + 1)

    a = np.maximum(areas, 1.0)
    my, mx = total(yy) / a, total(xx) / a
    # A unit square pixel adds 1/12 to each coordinate's variance (the continuous shape's moments).
    vyy = total(yy * yy) / a - my * my + 1.0 / 12.0
    vxx = total(xx * xx) / a - mx * mx + 1.0 / 12.0
    vxy = total(yy * xx) / a - my * mx
    small = 0.5 * (vyy + vxx) - np.sqrt(0.25 * (vyy - vxx) ** 2 + vxy * vxy)
    return 4.0 * np.sqrt(np.maximum(small, 0.0))


def particle_scale(mask: np.ndarray) -> float | None:
    """Area-weighted median particle diameter (px) of a foreground ``mask``; None without components.

    Parameters
    ----------
    mask : numpy.ndarray
        2-D boolean foreground: particles and clusters of particles. Thickness and moments
        are read with its holes filled (a rimmed particle's darker interior, noise dips inside
        a particle); the ECD and the weights count its own pixels.

    Returns
    -------
    float or None
        The area-weighted median over the components of at least :data:`MIN_COMPONENT_PX`
        pixels of ``E · min(1, T / m)`` (module docstring): the typical ECD of isolated
        particles, and of the particles inside clusters rather than the clusters'.
    """
    # Thickness and moments are the outline's (holes filled); the ECD and the weights are the
    # mask's own pixels, as the estimate has always read them: a network of touching particles
    # that encloses substrate is not one large particle's area.
    filled = ndimage.binary_fill_holes(mask)
    lab, n = ndimage.label(filled)
    if n == 0:
        return None
    pixels = np.bincount(lab.ravel(), weights=mask.ravel(), minlength=n + 1)
    keep = pixels >= MIN_COMPONENT_PX
    keep[0] = False
    if not keep.any():
        return None
    lab = np.where(keep[lab], lab, 0)
    areas = np.where(keep, np.bincount(lab.ravel(), minlength=n + 1), 0).astype(np.float64)
    ecd = np.sqrt(4.0 * np.where(keep, pixels, 0.0) / math.pi)
    minor = np.where(keep, np.maximum(_moment_minor_axis(lab, n, areas), 1.0), 1.0)
    # The thickness is read after a 3 × 3 majority vote: single noise pixels of a threshold
    # mask on the outline would notch the inscribed discs (the area and moments barely notice
    # them); the components, their ECD and moments stay those of the mask.
    lab_thick = np.where(majority3(filled), lab, 0)
    dist = ndimage.distance_transform_edt(lab_thick > 0)
    # One particle: at least half its area is as thick as SINGLE_RATIO of its moment width,
    # less a pixel on either side (a noise pixel at the outline notches the inscribed discs by
    # one pixel; the moments barely notice it). Below MIN_THICKNESS_PX the test cannot tell.
    test = SINGLE_RATIO * minor - 2.0
    resolved = keep & (test > MIN_THICKNESS_PX)
    ratio = np.ones(n + 1)
    if resolved.any():
        cluster = resolved & (_covered_share(dist, lab_thick, areas, np.where(resolved, test, 0.0)) < 0.5)
        # Particles thinner than MIN_THICKNESS_PX are not resolved: such a component keeps its ECD.
        # (At t = 3 the reach is one pixel: the 4-neighbours of the pixels at least 2 px inside.)
        floor = dilate_cross(dist >= 2.0) & (lab_thick > 0)
        floor_share = np.where(cluster, np.bincount(lab_thick.ravel(), weights=floor.ravel(), minlength=n + 1) / np.maximum(areas, 1.0), 0.0)
        cluster &= floor_share >= 0.5
        if cluster.any():
            # Bisection in log t between MIN_THICKNESS_PX (share ≥ 1/2) and the test width (< 1/2).
            lo, hi = np.full(n + 1, math.log(MIN_THICKNESS_PX)), np.log(np.maximum(test, MIN_THICKNESS_PX))
            share_lo, share_hi = floor_share, np.zeros(n + 1)
            for _ in range(BISECTIONS):
                mid = 0.5 * (lo + hi)
                share = _covered_share(dist, lab_thick, areas, np.where(cluster, np.exp(mid), 0.0))
                up = share >= 0.5
                lo, share_lo = np.where(up, mid, lo), np.where(up, share, share_lo)
                hi, share_hi = np.where(up, hi, mid), np.where(up, share_hi, share)
            # Within the bracket the covered share is taken linear in log t.
            w = np.clip((share_lo - 0.5) / np.maximum(share_lo - share_hi, 1e-9), 0.0, 1.0)
            thickness = np.exp(lo + w * (hi - lo))
            ratio = np.where(cluster, np.minimum(1.0, thickness / minor), 1.0)
    diameters = (ecd * ratio)[keep]
    weights = pixels[keep]
    order = np.argsort(diameters, kind="stable")
    cum = np.cumsum(weights[order])
    return float(diameters[order][np.searchsorted(cum, 0.5 * cum[-1])])
