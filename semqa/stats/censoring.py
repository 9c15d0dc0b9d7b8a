"""The smallest size an analysis can measure, and whether its D-values are censored by it.

An image analysis sizes a particle only when its segment holds at least ``min_pixels``
pixels (:data:`semqa.particles.measure.DEFAULT_MIN_PIXELS`), so nothing below the
equivalent circular diameter of that area is measured:

    d_min = 2 · sqrt(min_pixels / π) · pixel size

(ISO 13322-1:2014 §5: the lower limit of measurement follows from the pixel size and the
least number of pixels a particle must cover). At 10 px and 0.4 µm/px, d_min = 1.43 µm.

Just above the limit, pixel quantisation decides whether a particle is kept: its outline
falls on the pixel grid to about ±½ pixel on each side, so its measured ECD is uncertain by
about one pixel, and a particle whose true ECD lies within **one pixel above d_min** may be
kept or lost. The band ``[d_min, d_min + 1 px]`` is where the measured distribution is
truncated; only sizes above it are measured without loss.

Whether that truncation matters is a statistical question: a D-value is **censored** when
what the analysis cannot size moves it by more than its own sampling uncertainty. The share
of the population below the band is estimated by fitting a log-normal (the usual model of
milled and micronised powders, ISO 9276-5) to the ECDs above the band by maximum likelihood
for a left-truncated sample (Cohen, *Truncated and Censored Samples*, 1991, ch. 2). If that
share ``m`` were lost, the measured D_p would sit at the population's quantile
``m + p (1 − m)``; the bias ``Q(m + p(1 − m)) − Q(p)`` is compared with the two-sided 95 %
half-width of D_p, ``1.96 · sqrt(p (1 − p) / n) / f(Q(p))`` (asymptotic variance of a sample
quantile; Serfling, *Approximation Theorems of Mathematical Statistics*, 1980, §2.3.3), with
``f`` the fitted density. A D-value that lies inside the band itself is censored outright.
The assessment uses the number-weighted distribution, which truncation at small sizes
affects most. Particles wholly below the limit leave no trace; the fit extrapolates the
measured part, which is why a censored result is ``inconclusive`` rather than corrected.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import numpy as np
from pydantic import BaseModel, Field
from scipy import special

from semqa.stats.psd import STANDARD_QUANTILES, as_sizes, d_values

#: Least number of particles above the band for the log-normal fit; below it only D-values
#: inside the band are flagged (the count warnings of :mod:`semqa.stats.psd` apply anyway).
MIN_FIT_PARTICLES: int = 20

#: Two-sided level of the sampling uncertainty the censoring bias is compared with.
CONFIDENCE: float = 0.95

_NAMES = {0.1: "D10", 0.5: "D50", 0.9: "D90"}

# The normal and log-normal functions the assessment needs, computed as scipy.stats computes
# them (``norm`` and ``lognorm`` in scipy/stats/_continuous_distns.py: standardise, then
# scipy.special) but without importing scipy.stats, whose import costs ~0.6 s CPU of every
# analysis's start-up (issue 15). tests/test_special_functions.py checks them against scipy.stats.
_LOG_SQRT_2PI = float(np.log(np.sqrt(2 * np.pi)))


def norm_logpdf(x: np.ndarray | float, mu: float, sigma: float) -> np.ndarray | float:
    """``scipy.stats.norm.logpdf(x, mu, sigma)``."""
    z = (np.asarray(x, dtype=float) - mu) / sigma
    return -(z**2) / 2.0 - _LOG_SQRT_2PI - math.log(sigma)


def norm_logsf(x: float, mu: float, sigma: float) -> float:
    """``scipy.stats.norm.logsf(x, mu, sigma)``."""
    return float(special.log_ndtr(-((x - mu) / sigma)))


def norm_cdf(x: float, mu: float, sigma: float) -> float:
    """``scipy.stats.norm.cdf(x, mu, sigma)``."""
    return float(special.ndtr((x - mu) / sigma))


def norm_ppf(q: float, mu: float = 0.0, sigma: float = 1.0) -> float:
    """``scipy.stats.norm.ppf(q, mu, sigma)``."""
    return float(special.ndtri(q) * sigma + mu)


def lognorm_pdf(x: float, sigma: float, scale: float) -> float:
    """``scipy.stats.lognorm.pdf(x, sigma, scale=scale)`` for ``x > 0``."""
    y = x / scale
    return float(np.exp(-np.log(y) ** 2 / (2 * sigma**2) - np.log(sigma * y * np.sqrt(2 * np.pi))) / scale)


class SizingLimit(BaseModel):
    """The smallest particle an analysis sizes, in µm, and where it comes from."""

    d_min_um: float = Field(
        description="below this nothing is measured: the ECD of min_pixels pixels, 2·sqrt(min_pixels/π)·pixel size, "
        "or the size detected with 50 % probability where the images' noise sets a larger one"
    )
    band_upper_um: float = Field(
        description="above this the analysis measures without loss: d_min + one pixel (pixel quantisation), or the size "
        "detected with 95 % probability where that is larger"
    )
    pixel_size_um: float = Field(description="pixel size of the analysed image (after SR), the coarsest of the inputs")
    min_pixels: int = Field(description="least segment area measured, pixels")
    detection_d50_um: float | None = Field(
        None, description="ECD detected with 50 % probability in the pooled images (semqa.particles.completeness.pooled_limit)"
    )
    detection_d95_um: float | None = Field(None, description="the same at 95 % probability")
    binding: Literal["pixels", "detection"] = Field(
        "pixels", description="which sets the band: the least pixel count or the images' noise (detection)"
    )
    source: str = Field(description="how the limit was derived")


def sizing_limit(
    pixel_size_um: float, min_pixels: int, detection_um: tuple[float, float] | None = None
) -> SizingLimit:
    """:class:`SizingLimit` of an analysis at ``pixel_size_um`` (µm/px) keeping ≥ ``min_pixels`` px.

    ``detection_um``: the ECDs (µm) detected with 50 % and 95 % probability in the pooled images
    (:func:`semqa.particles.completeness.pooled_limit`). Where the 95 % one lies above the pixel band, the
    images' noise, not their pixel count, truncates the distribution, and the band becomes
    ``[max(d_min, d50), d95]``: sizes thinned by the detection are censored like those quantisation thins.

    >>> sizing_limit(0.4, 10).d_min_um.__round__(2)
    1.43
    >>> sizing_limit(0.4, 10, (2.0, 3.0)).binding
    'detection'
    """
    d_min = 2.0 * math.sqrt(min_pixels / math.pi) * pixel_size_um
    pixels = f"2·sqrt({min_pixels} px/π) × {pixel_size_um:g} µm/px (ISO 13322-1 lower limit from the least pixel count)"
    d50, d95 = detection_um if detection_um is not None else (None, None)
    if d95 is None or d50 is None or not d95 > d_min + pixel_size_um:
        return SizingLimit(
            d_min_um=d_min, band_upper_um=d_min + pixel_size_um, pixel_size_um=pixel_size_um, min_pixels=int(min_pixels),
            detection_d50_um=d50, detection_d95_um=d95, source=pixels,
        )
    return SizingLimit(
        d_min_um=max(d_min, d50),
        band_upper_um=d95,
        pixel_size_um=pixel_size_um,
        min_pixels=int(min_pixels),
        detection_d50_um=d50,
        detection_d95_um=d95,
        binding="detection",
        source=(
            f"the images' detection limit: a particle of their contrast is found with 50 % probability at "
            f"{d50:.3g} µm and 95 % at {d95:.3g} µm (semqa.particles.completeness), above the pixel-count limit {pixels}"
        ),
    )


class Censoring(BaseModel):
    """How far a PSD is truncated by its sizing limit (module docstring)."""

    limit: SizingLimit
    n: int = Field(description="particles measured")
    fraction_near_limit: float | None = Field(description="share of measured particles at or below band_upper (in the band or under it)")
    fitted_share_below: float | None = Field(
        None, description="share of the fitted log-normal population below d_min + 1 px (None: too few to fit)"
    )
    bias_um: dict[str, float] = Field(default_factory=dict, description="D-value → its rise if that share is lost, µm")
    half_width_um: dict[str, float] = Field(default_factory=dict, description="D-value → 95 % sampling half-width, µm")
    censored: list[str] = Field(default_factory=list, description="D-values the limit affects (D10, D50, D90)")
    message: str | None = Field(None, description="why, when any D-value is censored")


#: Largest standardised truncation point ``ξ = (ln b − μ)/σ`` of the fit: Φ(8) = 1 − 6e-16, a few
#: units in the last place below 1, where the shifted quantiles of the assessment stay finite.
_MAX_XI = 8.0


def _hazard(xi: float) -> float:
    """The standard normal's hazard ``φ(ξ)/(1 − Φ(ξ))`` (inverse Mills ratio), from logs so a large ξ does not overflow."""
    return math.exp(float(norm_logpdf(xi, 0.0, 1.0)) - float(special.log_ndtr(-xi)))


def _truncated_moment_ratio(xi: float) -> float:
    """Cohen's θ(ξ): variance over squared mean excess of a unit normal truncated below at ``ξ``.

    With the hazard ``λ = φ(ξ)/(1 − Φ(ξ))``, the truncated normal has mean ``ξ + (λ − ξ)`` and
    variance ``1 + ξλ − λ²``, so θ = (1 + ξλ − λ²)/(λ − ξ)²; it rises from 0 (ξ → −∞) to
    1 (ξ → ∞, the exponential limit). Cohen, *Truncated and Censored Samples* (1991), ch. 2.
    """
    hazard = _hazard(xi)
    return (1.0 + xi * hazard - hazard**2) / (hazard - xi) ** 2


def _fit_truncated_lognormal(ln_x: np.ndarray, ln_b: float) -> tuple[float, float]:
    """MLE ``(μ, σ)`` of a normal truncated below at ``ln_b`` (ln ECD above the band).

    The truncated normal is an exponential family in (Σx, Σx²), so its MLE matches the sample's
    mean and variance (divisor n): with ``D = mean − ln_b`` and ``s²`` the variance, ξ solves
    θ(ξ) = s²/D² (:func:`_truncated_moment_ratio`), then ``σ = D/(λ − ξ)`` and ``μ = ln_b − σξ``
    (Cohen 1991, ch. 2). θ is increasing, so the root is bracketed and bisected
    to the last bit; this is the optimum scipy's Nelder–Mead approached to its tolerance
    (``tests/test_censoring.py`` compares them), without importing ``scipy.optimize``, which costs
    every analysis ~0.2 s CPU of start-up (issue 15). A sample wider than any truncated normal
    (s²/D² ≥ θ(8)) has no interior optimum: the fit is held at ξ = 8, nearly the whole fitted
    population below the band, so every D-value reads as censored.
    """
    excess = float(ln_x.mean()) - ln_b
    ratio = float(ln_x.var()) / excess**2
    if ratio >= _truncated_moment_ratio(_MAX_XI):
        xi = _MAX_XI
    else:
        lo, hi = -1.0, _MAX_XI
        while _truncated_moment_ratio(lo) > ratio:  # θ(ξ) ≈ 1/ξ² far below the band
            if lo < -1e6:  # the band is > 10⁶ σ below the sample: the truncation does not matter
                return float(ln_x.mean()), float(ln_x.std())
            lo *= 2.0
        for _ in range(256):  # halvings from a bracket of < 2^60: far past the last bit
            mid = 0.5 * (lo + hi)
            if mid in (lo, hi):
                break
            lo, hi = (mid, hi) if _truncated_moment_ratio(mid) < ratio else (lo, mid)
        xi = lo
    hazard = _hazard(xi)
    sigma = excess / (hazard - xi)
    return ln_b - sigma * xi, sigma


def assess_censoring(ecd_um: Sequence[float] | np.ndarray, limit: SizingLimit) -> Censoring:
    """Which number-weighted D-values of ``ecd_um`` the sizing ``limit`` censors."""
    x = as_sizes(ecd_um)
    b = limit.band_upper_um
    out = Censoring(limit=limit, n=int(x.size), fraction_near_limit=float(np.mean(x <= b)) if x.size else None)
    if x.size == 0:
        return out
    q = np.asarray(STANDARD_QUANTILES)
    measured = d_values(x, "number", q)
    censored = {_NAMES[p] for p, d in zip(STANDARD_QUANTILES, measured, strict=True) if d <= b}
    above = np.log(x[x > b])
    if above.size >= MIN_FIT_PARTICLES and above.std() > 0:
        mu, sigma = _fit_truncated_lognormal(above, math.log(b))
        m = norm_cdf(math.log(b), mu, sigma)
        z = norm_ppf(0.5 + CONFIDENCE / 2)
        out.fitted_share_below = m
        for p in STANDARD_QUANTILES:
            true_q = math.exp(norm_ppf(p, mu, sigma))
            shifted = math.exp(norm_ppf(m + p * (1 - m), mu, sigma))
            density = lognorm_pdf(true_q, sigma, scale=math.exp(mu))
            half = z * math.sqrt(p * (1 - p) / x.size) / density
            out.bias_um[_NAMES[p]], out.half_width_um[_NAMES[p]] = float(shifted - true_q), float(half)
            if shifted - true_q > half:
                censored.add(_NAMES[p])
    out.censored = [name for name in ("D10", "D50", "D90") if name in censored]
    if out.censored:
        share = f"{100 * out.fraction_near_limit:.0f} %"
        below = "" if out.fitted_share_below is None else (
            f", and a fitted log-normal puts {100 * out.fitted_share_below:.0f} % of the population below it"
        )
        if limit.binding == "detection":
            out.message = (
                f"scan too noisy for its particles: {share} of particles lie between {limit.d_min_um:.3g} and "
                f"{limit.band_upper_um:.3g} µm, where a particle of the images' contrast is detected with only 50–95 % "
                f"probability{below}; {', '.join(out.censored)} censored; use a longer dwell time (more electrons per "
                "pixel), `--sr`, or a finer scan"
            )
        else:
            out.message = (
                f"resolution too coarse: {share} of particles within one pixel ({limit.pixel_size_um:.3g} µm) above the "
                f"{limit.d_min_um:.3g} µm sizing limit{below}; {', '.join(out.censored)} censored; use `--sr` or a finer scan"
            )
    return out
