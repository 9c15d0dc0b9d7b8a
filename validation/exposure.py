"""Exposure of a frame judged against its own shot noise: the gain fit and the clipped-pixel tests.

A counting detector records ``a·N`` with ``N ~ Poisson(λ)`` electrons (``a`` the gain, image
units per electron), plus read-out noise of variance ``b``; the ADC stores values in
``[0, 1]`` (0 is code 0, 1 the top code). A clean scan at a few electrons per pixel has many
pixels at 0 (``P(0) = e^{−λ}``) and some at the top code (``P(N ≥ 1/a)``): Poisson, not a fault.
A scan is refused only when its clipped pixels outnumber what the noise explains at the
frame's own gain, at a stated false-rejection rate, by more than a material share:

1. :func:`fit_gain` fits ``var = a·mean + b`` to the frame (photon-transfer method; Janesick,
   *Photon Transfer*, SPIE 2007, ch. 3) with the standard error of ``a``. It is not the
   detection's noise model (:func:`semqa.particles.noise.fit_noise_model`, the same line and
   residual): that one takes a robust (median) scale per bin, so edges do not inflate it, which
   assumes near-Gaussian noise and reads low at a few electrons per pixel; judging clipped counts
   needs the Poisson variance itself (the mean of the squared residual, exact for any count),
   with its standard error and the censored bins left out.
2. :func:`clipped_fractions` gives the shares of pixels at 0 and at the top code that shot
   noise explains, at the upper confidence bound of ``a`` (a larger gain means fewer electrons
   per level: more zeros and an earlier top code, so the bound is the lenient end).
3. :func:`exposure` reports the observed shares and their excess over the upper
   one-sided bound of the explained count (its Poisson-binomial sd).

Each of the two bounds is one-sided at :data:`FALSE_REJECTION_RATE`, so a clean frame exceeds
the explained share with probability at most twice that (union bound), before the material
margin of ``ValidationConfig.max_black_fraction`` / ``max_saturated_fraction`` is applied.
"""

from __future__ import annotations

import math

import numpy as np
from pydantic import BaseModel, Field
from scipy import ndimage
from scipy.special import ndtri
from scipy.stats import poisson

from semqa.particles.noise import immerkaer_residual
from validation.measures import intensity_range

#: One-sided false-rejection rate of each statistical bound (gain and count), per frame and check.
FALSE_REJECTION_RATE: float = 1e-3

#: Standard-normal quantile of :data:`FALSE_REJECTION_RATE` (3.09).
Z_BOUND: float = float(-ndtri(FALSE_REJECTION_RATE))

#: Bins of equal pixel count over the 3 × 3 local mean in which the variance is measured.
_N_BINS = 16

#: Side of the central crop the gain is fitted on, px.
FIT_SIDE_PX = 512

#: Largest expected share of 3 × 3 windows touching the top code in a bin the gain fit keeps.
_MAX_CENSORED_WINDOWS = 0.01

#: Side of the block whose mean estimates a pixel's expected count for :func:`clipped_fractions`
#: (25 pixels: the estimate's relative sd is 1/5 of a pixel's).
POISSON_BLOCK_PX = 5


#: Fewest electrons a level must expect per pixel to be measured at all: ``ln 2``, where a pixel
#: records nothing as often as something (``P(0) = 1/2``). Zeros of a darker level (a region
#: cut flat to code 0 by a black level set below it, or beam blanked) are not explained by
#: shot noise: the frame is under-exposed there beyond what can be measured.
MIN_MEASURABLE_ELECTRONS: float = math.log(2.0)


class GainFit(BaseModel):
    """``var = gain·mean + read_variance`` of one frame, in image units, with the gain's standard error."""

    gain: float = Field(description="image units per electron; ≤ 0 when the frame shows no Poisson part")
    gain_se: float = Field(ge=0, description="standard error of the gain, inflated by the fit's reduced χ² where > 1")
    read_variance: float = Field(ge=0, description="signal-independent variance, image units²")
    bins: int = Field(ge=0, description="bins of local mean the fit used")

    @property
    def gain_upper(self) -> float:
        """Upper one-sided confidence bound of the gain at :data:`FALSE_REJECTION_RATE`."""
        return self.gain + Z_BOUND * self.gain_se


def _window_stats(image: np.ndarray) -> dict[str, np.ndarray]:
    """Per interior pixel: the squared Immerkær residual, the 3 × 3 mean, minimum and maximum."""
    resid = immerkaer_residual(image)
    return {
        "r2": (resid * resid).ravel(),
        "mean": ndimage.uniform_filter(image, 3, mode="reflect")[1:-1, 1:-1].ravel(),
        "min": ndimage.minimum_filter(image, 3, mode="reflect")[1:-1, 1:-1].ravel(),
        "max": ndimage.maximum_filter(image, 3, mode="reflect")[1:-1, 1:-1].ravel(),
    }


def _bin_variances(stats: dict[str, np.ndarray], *, without_zeros: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per bin of 3 × 3 local mean: the mean, the variance and its standard error.

    Given the sum ``S`` of a window's Poisson counts at one expected level, the counts are
    multinomial, and the Immerkær residual ``r = Σ w·N / 6`` has ``E[r²] = S/9``: the mean of
    ``r²`` in a bin of local mean is the Poisson variance at that mean, for any count, where a
    robust (median-based) scale would assume Gaussian noise and bias low at a few electrons.
    Windows touching the top code are left out (their variance is censored), with
    ``without_zeros`` also windows touching code 0, and always windows of zeros only: a signal
    cut to code 0 has variance 0 whatever lies below, while shot noise leaves a window of nine
    zeros at ≥ 1.5 electrons a pixel with probability ``e^{−13.5}``.
    """
    measured = (stats["max"] > 0.0) & (stats["min"] < 1.0)
    if without_zeros:
        measured &= stats["min"] > 0.0
    r2, m = stats["r2"][measured], stats["mean"][measured]
    if m.size < 16 * _N_BINS:
        return np.zeros(0), np.zeros(0), np.zeros(0)
    order = np.argsort(m, kind="stable")
    chunks = np.array_split(order, _N_BINS)
    means = np.array([m[c].mean() for c in chunks])
    variances = np.array([r2[c].mean() for c in chunks])
    se = np.array([r2[c].std(ddof=1) / math.sqrt(c.size) for c in chunks])
    return means, variances, np.maximum(se, 1e-30)


def _wls(means: np.ndarray, variances: np.ndarray, se: np.ndarray) -> tuple[float, float, float]:
    """Weighted least-squares line ``var = a·mean + b``: ``(a, b, se(a))``, se scaled by √χ²_red where > 1
    (the Birge ratio: structure the line does not model widens the interval instead of biasing the test)."""
    design = np.column_stack([means, np.ones_like(means)]) / se[:, None]
    target = variances / se
    coef, *_ = np.linalg.lstsq(design, target, rcond=None)
    dof = max(1, means.size - 2)
    chi2_red = float(((design @ coef - target) ** 2).sum()) / dof
    cov = np.linalg.pinv(design.T @ design)
    return float(coef[0]), float(coef[1]), math.sqrt(max(float(cov[0, 0]), 0.0) * max(1.0, chi2_red))


def _uncensored_bins(means: np.ndarray, gain: float, *, with_zeros: bool) -> np.ndarray:
    """Bins whose 3 × 3 windows touch a clipped value with probability ≤ :data:`_MAX_CENSORED_WINDOWS`
    at ``λ = mean/gain`` (Poisson): the top code ``⌈1/gain⌉`` electrons, and with ``with_zeros`` code 0."""
    lam = means / gain
    clipped = poisson.sf(math.ceil(1.0 / gain - 1e-9) - 1, lam) + (np.exp(-lam) if with_zeros else 0.0)
    return 1.0 - (1.0 - np.minimum(clipped, 1.0)) ** 9 <= _MAX_CENSORED_WINDOWS


def fit_gain(image: np.ndarray) -> GainFit:
    """Photon-transfer fit of ``var = a·mean + b`` to the frame's own noise, with the standard error of ``a``.

    The line is refitted on the bins of local mean (windows touching code 0 left out) whose
    level puts at most :data:`_MAX_CENSORED_WINDOWS` of their windows at code 0 or the top code
    (``e^{−λ}`` and ``P(N ≥ ⌈1/a⌉)`` at ``λ = mean/a``, Poisson), so clipping at either end does
    not bend it (at 10 e⁻/px a level of 5 electrons reaches the top code of 10 in 3 % of pixels),
    and a black level set below code 0, whose cut counts look Poisson at a larger gain, does not
    set the gain its zeros are judged by. Where fewer than three bins are free of both (at
    ~10 e⁻/px zeros appear at every level), only the top code's bins are dropped and zeros count
    as the counts they are; a cut of a few electrons is then within the shot noise
    (``benchmarks/bench_validation_physics.py`` reports where).
    Texture and edges add variance the line does not model; they widen ``gain_se`` (Birge
    ratio) and, at high doses where they dominate, raise ``a``, which only makes the tests of
    :func:`clipped_fractions` more lenient where clipped Poisson tails are negligible anyway.
    """
    img = np.asarray(image, dtype=np.float64)
    if min(img.shape) < 3:
        return GainFit(gain=0.0, gain_se=0.0, read_variance=0.0, bins=0)
    # A central crop of at most FIT_SIDE_PX²: 16 bins of 16 000 windows each measure the variance
    # to ±1 %, and the noise of a frame is the same everywhere at a given level.
    r0, c0 = max(0, (img.shape[0] - FIT_SIDE_PX) // 2), max(0, (img.shape[1] - FIT_SIDE_PX) // 2)
    stats = _window_stats(img[r0 : r0 + FIT_SIDE_PX, c0 : c0 + FIT_SIDE_PX])
    means, variances, se = _bin_variances(stats)
    if means.size < 3:
        return GainFit(gain=0.0, gain_se=0.0, read_variance=0.0, bins=int(means.size))
    a, b, a_se = _wls(means, variances, se)
    # Levels where shot noise leaves a zero in at most 1 % of windows: there a window touching
    # code 0 is either that rare event or a cut signal, and leaving such windows out moves the
    # variance by at most that share, while keeping a cut's mixed windows out of the fit.
    nonzero = _bin_variances(stats, without_zeros=True)
    kept: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
    for _ in range(4):  # a few passes: the kept bins depend on the gain they fit
        if a <= 0 or nonzero[0].size < 3:
            break
        keep = _uncensored_bins(nonzero[0], a, with_zeros=True)
        if np.count_nonzero(keep) < 3:
            break
        candidate = tuple(x[keep] for x in nonzero)
        if kept is not None and np.array_equal(candidate[0], kept[0]):
            break
        kept = candidate
        a, b, a_se = _wls(*kept)
    if kept is None and a > 0:
        # At ~10 e⁻/px zeros appear at every level: only the top code's bins are dropped.
        keep = _uncensored_bins(means, a, with_zeros=False)
        if np.count_nonzero(keep) >= 3:
            kept = (means[keep], variances[keep], se[keep])
            a, b, a_se = _wls(*kept)
    n_bins = int(kept[0].size) if kept is not None else int(means.size)
    return GainFit(gain=a, gain_se=a_se, read_variance=max(b, 0.0), bins=n_bins)


def clipped_fractions(image: np.ndarray, fit: GainFit | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Per pixel, the probability shot noise puts it at code 0 and at the top code, at the upper gain bound.

    ``λ_i`` is the mean of the :data:`POISSON_BLOCK_PX`² block around pixel i in electrons (for
    the top code the larger of it and the 3 × 3 window's),
    ``mean² / (a·mean + b)`` with ``a`` the upper confidence bound of the gain (for pure Poisson
    counts exactly ``mean / a``), undone for the cut at the top code (:func:`_uncensored_mean`);
    ``P(0) = e^{−max(λ, ln 2)}`` (:data:`MIN_MEASURABLE_ELECTRONS`) and ``P(N ≥ ⌈λ/mean⌉)``, the top code being
    ``λ/mean`` electrons. A frame without a measurable Poisson part (noise-free, or beam off)
    explains no clipped pixel.
    """
    img = np.asarray(image, dtype=np.float64)
    fit = fit if fit is not None else fit_gain(img)
    if fit.gain <= 0 or min(img.shape) < POISSON_BLOCK_PX:
        zeros = np.zeros(img.shape)
        return zeros, zeros
    gain = fit.gain_upper
    # A bright feature narrower than the block (an SE edge a pixel wide) pulls the block's mean
    # below its own level: the top-code test takes the larger of the 3 × 3 and the block estimate.
    small, block = (np.maximum(ndimage.uniform_filter(img, k, mode="reflect"), 0.0) for k in (3, POISSON_BLOCK_PX))
    lam_black = _electrons(block, gain, fit.read_variance)
    mean = np.maximum(small, block)
    lam = _electrons(mean, gain, fit.read_variance)
    top = lam / np.maximum(mean, 1e-12)
    lam = _uncensored_mean(lam, math.ceil(1.0 / gain - 1e-9))
    n_top = np.ceil(top - 1e-9)
    p_top = np.zeros_like(lam)
    # Beyond 10 sd (and 10 counts) above the level the tail is below 1e-20: not worth evaluating.
    near = n_top <= lam + 10.0 * np.sqrt(lam) + 10.0
    p_top[near] = poisson.sf(n_top[near] - 1, lam[near])
    return np.exp(-np.maximum(lam_black, MIN_MEASURABLE_ELECTRONS)), p_top


def _electrons(mean: np.ndarray, gain: float, read_variance: float) -> np.ndarray:
    """Expected electrons at a level: ``mean² / (gain·mean + read_variance)`` (Poisson: ``mean / gain``)."""
    return mean * mean / (gain * mean + read_variance + 1e-30)


def _uncensored_mean(censored: np.ndarray, n_top: int) -> np.ndarray:
    """The Poisson mean ``λ`` whose counts, cut at ``n_top``, average ``censored``.

    A block mean near the top code is itself clipped: ``E[min(N, n)] = λ·F(n−2; λ) + n·(1 − F(n−1; λ))``
    (``F`` the Poisson CDF), increasing in ``λ``; inverted by interpolation on a grid, so the
    tail above the top code is computed at the level that produced it, not below it.
    """
    grid = np.linspace(0.0, 4.0 * n_top + 20.0, 4096)
    cut = grid * poisson.cdf(n_top - 2, grid) + n_top * poisson.sf(n_top - 1, grid)
    inverted = np.interp(censored, cut, grid, right=grid[-1])
    # Far below the top code the cut changes nothing: keep λ there exactly as measured.
    return np.where(censored < 0.5 * n_top, censored, inverted)


def _excess(observed: int, p: np.ndarray) -> tuple[float, float]:
    """(explained share, share of pixels beyond the upper one-sided bound of the explained count).

    Pixel counts are independent (shot noise), so the number of clipped pixels is a sum of
    Bernoulli variables with the probabilities ``p``: Poisson-binomial, mean ``Σp`` and variance
    ``Σp(1−p)``; the bound is mean + :data:`Z_BOUND` sd (normal approximation, and ≥ 1 count).
    """
    n = p.size
    expected = float(p.sum())
    bound = expected + Z_BOUND * math.sqrt(float((p * (1.0 - p)).sum())) + 1.0
    return expected / n, max(0.0, observed - bound) / n


#: Side of the windows the flat-clipping test looks at: a region cut flat to one code.
FLAT_WINDOW_PX = 3


def _clipped(image: np.ndarray, p: np.ndarray, at_code: np.ndarray) -> dict[str, float]:
    """Observed, explained and excess shares of pixels at one clip code, per pixel and in flat windows.

    Per pixel: the pixels at the code against ``p``. Flat windows: the pixels whose whole
    :data:`FLAT_WINDOW_PX`² window is at the code against ``p⁹`` (nine independent counts at
    the pixel's level): a signal cut flat, which shot noise almost never leaves (at ``λ = ln 2``,
    ``2^{−9}``), however many single clipped pixels the level explains. The excess is the larger.
    """
    flat = ndimage.minimum_filter(at_code.astype(np.uint8), FLAT_WINDOW_PX, mode="nearest").astype(bool)
    expected, excess = _excess(int(np.count_nonzero(at_code)), p)
    flat_expected, flat_excess = _excess(int(np.count_nonzero(flat)), p**(FLAT_WINDOW_PX**2))
    return {
        "fraction": float(np.count_nonzero(at_code)) / image.size,
        "expected": expected,
        "flat_fraction": float(np.count_nonzero(flat)) / image.size,
        "flat_expected": flat_expected,
        "excess": max(excess, flat_excess),
    }


def exposure(image: np.ndarray, intensity: tuple[float, float] | None = None) -> dict[str, float]:
    """Shares of black (code 0) and saturated (top code) pixels, single and in flat windows, the
    shares shot noise explains, the excess beyond them (see the module), the fitted gain and the
    dynamic range.

    ``electrons_per_unit`` is ``1/gain`` (the dose a pixel of value 1 collects), NaN without a
    Poisson part. The dynamic range is the spread between the 0.5th and 99.5th percentiles as
    a share of full scale; ``intensity`` passes those percentiles where already known.
    """
    img = np.asarray(image, dtype=np.float64)
    lo, hi = intensity if intensity is not None else intensity_range(img)
    fit = fit_gain(img)
    p_black, p_top = clipped_fractions(img, fit)
    fields: dict[str, float] = {}
    for name, p, at_code in (("saturated", p_top, img >= 1.0), ("black", p_black, img <= 0.0)):
        fields.update({f"{name}_{k}": v for k, v in _clipped(img, p, at_code).items()})
    fields["electrons_per_unit"] = 1.0 / fit.gain if fit.gain > 0 else float("nan")
    fields["dynamic_range"] = hi - lo
    return fields
