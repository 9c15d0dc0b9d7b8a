"""How complete a frame's detection is by particle size: the smallest particle its significance test finds.

A particle is kept only when the scale-space test of :mod:`semqa.particles.detection` finds a
seed of its own size and its summed contrast is significant (:func:`semqa.particles.segmentation.detect`).
Both depend on its contrast per pixel ``c`` (stabilised units), on the null sd of sums
``σ_sum`` and on its size, so a noisy frame loses its small particles first: its PSD is
truncated at a *detection limit* that lies above the pixel-count sizing limit at low dose.

For a disc of radius ``R`` blurred by the probe (Gaussian, sd ``b``), the response at its centre
of the DoG of centre scale ``s`` and surround ``3s`` is exact in closed form: an isotropic Gaussian
of variance ``v`` holds ``1 − exp(−R²/2v)`` of its mass inside the disc (the Rayleigh CDF), so

    DoG_s(0) = c · [exp(−R² / 2(9s² + b²)) − exp(−R² / 2(s² + b²))],

and its null sd is ``‖G_s − G_3s‖₂ · σ_sum = sqrt(0.17778/π) / s · σ_sum`` (from
``∫G_a G_b = 1/(2π(a² + b²))``). The summed contrast over the particle's N pixels stands
``c·sqrt(N)/σ_sum`` null sds above zero. A particle of the frame's contrast is then detected with
probability ``Φ(min(max_s r_s, z_sum) − k)`` (``k`` the test's threshold; the responses carry unit
noise; ``s`` over the scales that count as the particle's own, ``2πs² ≤ 4N``). The limit is stated at
50 % and 95 % detection; the sizes between are where the measured distribution is thinned.

The contrast is read from the detected particles: the median over the larger half of them (by
area) of their mean stabilised level above their local substrate. The larger ones are found
whatever their contrast, so their median is not raised by the selection that thins the small
ones (a frame whose particles differ in contrast has a spread of limits; the median's is stated).

>>> limit = detection_limit(contrast=1.3, sum_sd=1.37, threshold=5.25, scales=(1.0, 2.0, 4.0, 8.0), blur_px=0.42)
>>> 6.0 < limit.d50_px < limit.d95_px < 12.0
True
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from pydantic import BaseModel, Field
from scipy import special

from semqa.particles.detection import SURROUND

#: ``‖G_s − G_{3s}‖₂ · s`` for the unit-integral 2-D Gaussians of the DoG (module docstring).
_DOG_NORM_TIMES_S = math.sqrt((0.25 + 1.0 / (4.0 * SURROUND**2) - 2.0 / (2.0 * (1.0 + SURROUND**2))) / math.pi)

#: Detection probabilities the limit is stated at.
LIMIT_PROBABILITIES = (0.5, 0.95)

#: Smallest ECD (px) the limit is searched from: below half a pixel nothing is a particle.
_SEARCH_FROM_PX = 0.5


class DetectionLimit(BaseModel):
    """ECDs (px) of a particle of the frame's contrast detected with 50 % and 95 % probability, and what they follow from."""

    d50_px: float = Field(description="ECD detected with probability 0.5, px")
    d95_px: float = Field(description="ECD detected with probability 0.95, px")
    contrast: float = Field(description="the particles' median contrast per pixel, stabilised units (module docstring)")
    sum_sd: float = Field(description="null sd of a sum of N stabilised pixels over sqrt(N)")
    threshold: float = Field(description="the significance test's k")
    scales: tuple[float, ...] = Field(description="the frame's DoG centre scales, px")
    blur_px: float = Field(description="Gaussian sd of the probe, px")
    source: str = Field(description="how the limit was derived")

    def probability(self, ecd_px: float) -> float:
        """Chance that a particle of ECD ``ecd_px`` and the frame's contrast is detected."""
        return detection_probability(ecd_px, self.contrast, self.sum_sd, self.threshold, self.scales, self.blur_px)


def disc_response(ecd_px: float, contrast: float, sum_sd: float, scales: Sequence[float], blur_px: float) -> float:
    """Largest own-scale DoG response (null sds) at the centre of a disc of ECD ``ecd_px``, or its summed
    contrast's z where that is smaller (both tests must pass; module docstring)."""
    r2 = (0.5 * ecd_px) ** 2
    area = math.pi * r2
    b2 = blur_px * blur_px
    best = -math.inf
    for s in scales:
        if 2.0 * math.pi * s * s > 4.0 * max(area, 1.0) and s > scales[0]:
            break
        dog = math.exp(-r2 / (2.0 * (SURROUND**2 * s * s + b2))) - math.exp(-r2 / (2.0 * (s * s + b2)))
        best = max(best, contrast * dog * s / (_DOG_NORM_TIMES_S * sum_sd))
    return min(best, contrast * math.sqrt(area) / sum_sd)


def detection_probability(ecd_px: float, contrast: float, sum_sd: float, threshold: float, scales: Sequence[float], blur_px: float) -> float:
    """``Φ(response − k)``: the chance that a particle of ECD ``ecd_px`` and the frame's contrast is detected."""
    return float(special.ndtr(disc_response(ecd_px, contrast, sum_sd, scales, blur_px) - threshold))


def _ecd_at(probability: float, contrast: float, sum_sd: float, threshold: float, scales: Sequence[float], blur_px: float) -> float:
    """Smallest ECD (px) detected with at least ``probability``; the largest size searched where none
    is (a lower bound: the frame's scales reach no farther).

    The response rises with size until the disc outgrows the largest DoG scale, then falls (a
    disc far wider than the surround has a flat centre): the first crossing on a log grid of
    sizes up to 4 × the surround of the largest scale, refined by bisection.
    """
    target = threshold + float(special.ndtri(probability))
    grid = np.geomspace(_SEARCH_FROM_PX, max(_SEARCH_FROM_PX * 2.0, 4.0 * SURROUND * 2.0 * max(scales)), 96)
    above = [disc_response(float(x), contrast, sum_sd, scales, blur_px) >= target for x in grid]
    if not any(above):
        return float(grid[-1])
    first = above.index(True)
    if first == 0:
        return float(grid[0])
    lo, hi = float(grid[first - 1]), float(grid[first])
    for _ in range(40):
        mid = math.sqrt(lo * hi)
        lo, hi = (mid, hi) if disc_response(mid, contrast, sum_sd, scales, blur_px) < target else (lo, mid)
    return hi


def detection_limit(contrast: float, sum_sd: float, threshold: float, scales: Sequence[float], blur_px: float) -> DetectionLimit:
    """:class:`DetectionLimit` of a frame whose particles show ``contrast`` per pixel (stabilised units).

    Parameters
    ----------
    contrast : float
        The particles' contrast per pixel over their substrate, stabilised units (:func:`particle_contrast`).
    sum_sd : float
        Null sd of a sum of N stabilised pixels over sqrt(N) (``stabilized_sd × sum_inflation``).
    threshold : float
        The significance test's ``k``.
    scales : sequence of float
        The DoG centre scales of the frame, px.
    blur_px : float
        Gaussian sd of the scan's probe, px.
    """
    d50, d95 = (_ecd_at(p, contrast, sum_sd, threshold, scales, blur_px) for p in LIMIT_PROBABILITIES)
    return DetectionLimit(
        d50_px=d50,
        d95_px=d95,
        contrast=contrast,
        sum_sd=sum_sd,
        threshold=threshold,
        scales=tuple(scales),
        blur_px=blur_px,
        source=(
            f"particles' median contrast {contrast:.3g} per pixel against a sum noise sd {sum_sd:.3g} (stabilised units), "
            f"threshold {threshold:.3g}: a blurred disc detected with 50 % / 95 % probability (semqa.particles.completeness)"
        ),
    )


def pooled_limit(limits: Sequence[tuple[float, float]], weights: Sequence[float]) -> tuple[float, float]:
    """The ECDs detected with 50 % and 95 % probability in a pool of images, from each image's
    ``(d50, d95)`` (any one length unit) and its weight (the area it images: a lot's images sample one
    population, so each holds particles in proportion to its area, whatever share of them it detects).

    Each image's detection probability is taken as the log-normal CDF through its two stated points,
    ``Φ(z₀.₉₅ · ln(x/d50) / ln(d95/d50))``, and the pool's is their weighted mean: the share of the
    pooled population of size x that is measured. A single noisy frame among clean ones thins the
    pooled PSD by its area's share only, so it does not set the lot's limit.

    >>> d50, d95 = pooled_limit([(2.0, 3.0), (2.0, 3.0)], [1.0, 1.0])
    >>> round(d50, 6), round(d95, 6)
    (2.0, 3.0)
    >>> pooled_limit([(2.0, 3.0), (20.0, 30.0)], [99.0, 1.0])[1] < 3.5
    True
    """
    d50 = np.array([a for a, _ in limits], dtype=float)
    d95 = np.array([b for _, b in limits], dtype=float)
    w = np.asarray(weights, dtype=float)
    w = w / w.sum() if w.sum() > 0 else np.full(w.size, 1.0 / w.size)
    z95 = float(special.ndtri(0.95))
    spread = np.log(np.maximum(d95 / d50, 1.0 + 1e-9))

    def probability(x: float) -> float:
        return float(np.dot(w, special.ndtr(z95 * np.log(x / d50) / spread)))

    def at(p: float) -> float:
        lo, hi = float(d50.min()) / 16.0, float(d95.max()) * 16.0
        for _ in range(200):
            mid = math.sqrt(lo * hi)
            if mid in (lo, hi):
                break
            lo, hi = (mid, hi) if probability(mid) < p else (lo, mid)
        return hi

    if d50.size == 1:
        return float(d50[0]), float(d95[0])
    return at(0.5), at(0.95)


def particle_contrast(z: np.ndarray, labels: np.ndarray, substrate: np.ndarray) -> float | None:
    """Median, over the larger half of the labelled particles by area, of each one's mean of ``z``
    less its ``substrate`` level (per label, index 1…n); None without particles."""
    n = int(labels.max())
    if n == 0:
        return None
    sel = labels > 0
    ids = labels[sel]
    area = np.bincount(ids, minlength=n + 1)[1:].astype(float)
    mean = np.bincount(ids, weights=z[sel].astype(np.float64), minlength=n + 1)[1:] / np.maximum(area, 1.0)
    level = mean - np.asarray(substrate, dtype=float)[:n]
    ok = (area > 0) & np.isfinite(level)
    if not ok.any():
        return None
    large = ok & (area >= np.median(area[ok]))
    return float(np.median(level[large]))
