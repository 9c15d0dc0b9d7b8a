"""The blur a frame carries (probe and any defocus), with its confidence bounds, from the power spectrum.

An SEM frame is the scene convolved with the probe plus white shot noise, so its power
spectrum is ``P(f) = A·f^−β·exp(−4π²σ²f²) + N`` (the Gaussian probe's MTF squared; scenes of
particles have the spectrum of their edges, ``β = 3``, :data:`SCENE_BETA`). :func:`blur_estimate`
fits ``A``, ``σ`` and ``N`` to the radially binned periodogram by maximum likelihood and gives a
profile-likelihood interval for ``σ``:

* the periodogram of a Hann-windowed frame is, at each frequency, an exponential variable around
  ``P(f)`` (Whittle's approximation; Percival & Walden, *Spectral Analysis for Physical
  Applications*, CUP 1993, §6.6), so a bin averaging ``ν`` independent ordinates is Gamma with
  shape ``ν`` and the fit is a Gamma GLM with identity link (McCullagh & Nelder, *Generalized
  Linear Models*, 2nd ed., 1989, ch. 8), solved for fixed ``σ`` by iteratively reweighted
  non-negative least squares;
* ``ν`` is the bin's DFT count over 2 (Hermitian symmetry) and over the window's variance
  inflation ``Σ|c_k|²`` (:data:`HANN_VARIANCE_INFLATION`), bins being two DFT spacings wide so the
  Hann main lobe leaves neighbouring bins nearly independent;
* structure the model does not describe (a scene spectrum steeper or flatter than ``f^−3``)
  shows as a Pearson dispersion above 1, which widens the interval (quasi-likelihood, deviance
  divided by the dispersion) instead of biasing the test;
* the bounds are one-sided at :data:`validation.exposure.FALSE_REJECTION_RATE`: the set of ``σ``
  whose scaled deviance lies within ``z²`` of the minimum.

The noise ``N`` is fitted with the rest, so the bins where a sharp probe would leave detail
above the noise and a blurred one leaves none are evidence too: a blurred frame is told from a
sharp one by the power it lacks, not only by the power it shows. Where the data cannot bound
``σ`` from above (a low dose, few edges), the upper bound is ``inf``: undetermined.
"""

from __future__ import annotations

import math

import numpy as np
from pydantic import BaseModel, Field
from semqa.particles.noise import nonnegative_fit_2
from validation.exposure import Z_BOUND

#: Power-law exponent β of the scene spectrum ``S ∝ f^−β``: a field of particles with sharp
#: outlines has the spectrum of its edges, ``|Ĵ₁(2πfR)/f|² ∝ f^−3`` at frequencies above 1/R
#: (power laws of images: van der Schaaf & van Hateren, *Vision Res.* 36, 1996). Fitting β too
#: makes it trade against σ: on the families' frames it runs to the flattest β allowed and σ
#: doubles on clean frames, with no gain in power. A scene flatter than ``f^−3`` biases σ low,
#: the lenient side.
SCENE_BETA = 3.0

#: ``Σ_k |c_k|²`` of a 2-D Hann window's normalised squared-window spectrum: in 1-D the
#: coefficients at lags 0, ±1, ±2 are 1, −2/3, 1/6 (``w² = 3/8 − cos/2 + cos2/8``), whose squares sum
#: to 35/18; the 2-D window is separable. A bin's mean periodogram varies as ``P²·Σ|c|²/K`` over ``K``
#: ordinates instead of ``P²/K``.
HANN_VARIANCE_INFLATION = (35.0 / 18.0) ** 2

#: Bin width in DFT spacings (``1/side``): twice the lag at which the Hann correlation falls to 1/6.
BIN_WIDTH_DFT = 2

#: Lowest frequency fitted, in cycles per frame side: below it lie the field's gradient and the
#: window's leakage, not the probe.
LOWEST_CYCLES = 4

#: Step of the σ grid the profile likelihood is evaluated on up to :data:`FINE_GRID_END_PX`, px;
#: beyond it 40 geometric steps (a blur that large is out of focus by any limit, only its bound matters).
SIGMA_STEP_PX = 0.02
FINE_GRID_END_PX = 5.0


class BlurEstimate(BaseModel):
    """Gaussian blur sigma of one frame in its own pixels, with one-sided confidence bounds."""

    sigma_px: float = Field(ge=0, description="maximum-likelihood sigma, px (inf: no detail above the noise)")
    lower_px: float = Field(ge=0, description="lower one-sided bound at the false-rejection rate, px")
    upper_px: float = Field(ge=0, description="upper one-sided bound, px; inf where the data do not bound it")
    bins: int = Field(ge=0, description="frequency bins fitted")
    dispersion: float = Field(ge=0, description="Pearson χ²/dof of the best fit (1 for a model the data follow)")


def _radial_spectrum(image: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(bin centres in cycles/px, mean Hann periodogram, independent ordinates ν) of the fitted bins."""
    x = np.asarray(image, dtype=np.float64)
    h, w = x.shape
    window = np.outer(np.hanning(h), np.hanning(w))
    power = np.abs(np.fft.fft2((x - x.mean()) * window)) ** 2 / (window**2).sum()
    f = np.hypot(np.fft.fftfreq(h)[:, None], np.fft.fftfreq(w)[None, :]).ravel()
    side = min(h, w)
    width = BIN_WIDTH_DFT / side
    edges = np.arange(LOWEST_CYCLES / side, 0.5 + 1e-12, width)
    idx = np.digitize(f, edges) - 1
    inside = (idx >= 0) & (idx < edges.size - 1)
    n_bins = edges.size - 1
    counts = np.bincount(idx[inside], minlength=n_bins).astype(np.float64)
    mean_power = np.bincount(idx[inside], power.ravel()[inside], n_bins) / np.maximum(counts, 1.0)
    centres = 0.5 * (edges[1:] + edges[:-1])
    keep = counts > 0
    return centres[keep], mean_power[keep], counts[keep] / (2.0 * HANN_VARIANCE_INFLATION)


def _fit_at(
    sigma: float, f: np.ndarray, y: np.ndarray, nu: np.ndarray, start: np.ndarray | None = None
) -> tuple[float, float, np.ndarray]:
    """(deviance, Pearson χ², fitted means) of the Gamma-GLM fit of ``A·f^−β·exp(−4π²σ²f²) + N``,
    A, N ≥ 0, at fixed σ; the scoring starts from ``start`` (the fit at a neighbouring σ) if given."""
    g = f ** (-SCENE_BETA) * np.exp(-4.0 * math.pi**2 * sigma**2 * f * f)
    design = np.column_stack([g, np.ones_like(f)])
    mu = np.full_like(y, y.mean()) if start is None else start
    for _ in range(30):  # Fisher scoring: weights ν/μ², converges in a few steps
        wts = np.sqrt(nu) / mu
        coef = np.array(nonnegative_fit_2(design * wts[:, None], y * wts))
        new = np.maximum(design @ coef, 1e-30)
        # np.allclose(new, mu, rtol=1e-6) without its per-call checks (a few thousand calls a frame)
        if bool(np.all(np.abs(new - mu) <= 1e-8 + 1e-6 * np.abs(mu))):
            mu = new
            break
        mu = new
    deviance = 2.0 * float(np.sum(nu * ((y - mu) / mu - np.log(np.maximum(y, 1e-300) / mu))))
    pearson = float(np.sum(nu * ((y - mu) / mu) ** 2))
    return deviance, pearson, mu


def blur_estimate(image: np.ndarray) -> BlurEstimate:
    """Maximum-likelihood Gaussian blur sigma of ``image`` (px) and its one-sided profile-likelihood bounds.

    σ is scanned on a grid of :data:`SIGMA_STEP_PX` up to the frame side over 8, where the MTF²
    at the lowest fitted frequency (:data:`LOWEST_CYCLES`) is ``e^{−π²}``: beyond it the fitted band
    holds no trace of the scene; the
    bounds are where the deviance, divided by the dispersion where above 1, exceeds its minimum
    by ``z²`` (:data:`validation.exposure.Z_BOUND`). A bound at the end of the grid is ``inf``.
    Frames under 16 px a side carry no measurable blur: ``inf`` with no bins.
    """
    x = np.asarray(image, dtype=np.float64)
    if min(x.shape) < 16 or not np.isfinite(x).all() or x.std() == 0:
        return BlurEstimate(sigma_px=math.inf, lower_px=0.0, upper_px=math.inf, bins=0, dispersion=0.0)
    f, y, nu = _radial_spectrum(x)
    end = min(x.shape) / 8.0
    grid = np.arange(0.0, min(end, FINE_GRID_END_PX) + SIGMA_STEP_PX / 2, SIGMA_STEP_PX)
    if end > FINE_GRID_END_PX:
        grid = np.concatenate([grid, np.geomspace(FINE_GRID_END_PX, end, 41)[1:]])
    # Along the grid each fit starts from its neighbour's: a few scoring steps instead of ~25.
    fits, mu = [], None
    for s in grid:
        deviance, pearson, mu = _fit_at(float(s), f, y, nu, mu)
        fits.append((deviance, pearson))
    fits = np.array(fits)
    best = int(np.argmin(fits[:, 0]))
    dof = max(1, f.size - 3)
    dispersion = fits[best, 1] / dof
    within = np.flatnonzero((fits[:, 0] - fits[best, 0]) / max(1.0, dispersion) <= Z_BOUND**2)
    lower = float(grid[within[0]])
    upper = math.inf if within[-1] == grid.size - 1 else float(grid[within[-1]])
    sigma = math.inf if best == grid.size - 1 else float(grid[best])
    return BlurEstimate(sigma_px=sigma, lower_px=lower, upper_px=upper, bins=int(f.size), dispersion=dispersion)
