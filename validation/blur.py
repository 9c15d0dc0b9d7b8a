"""The blur a frame carries (probe and any defocus), with its confidence bounds, from the power spectrum.

An SEM frame is the scene convolved with the probe plus white shot noise, so its power
spectrum is ``P(f) = A·S_ξ(f)·exp(−4π²σ²f²) + N`` (the Gaussian probe's MTF squared). The scene
spectrum ``S_ξ = (1 + (2πξf)²)^(−3/2)`` is that of a random two-phase medium of correlation
length ξ (:data:`CORRELATION_LENGTH_MIN_PX`): flat below the knee ``1/(2πξ)``, above it the
``f^−3`` of sharp edges (:data:`SCENE_BETA`). :func:`blur_estimate` fits ``A``, ``σ``, ``ξ`` and
``N`` to the radially binned periodogram by maximum likelihood and gives a profile-likelihood
interval for ``σ`` (ξ, A and N profiled out):

* the periodogram of a Hann-windowed frame is, at each frequency, an exponential variable around
  ``P(f)`` (Whittle's approximation; Percival & Walden, *Spectral Analysis for Physical
  Applications*, CUP 1993, §6.6), so a bin averaging ``ν`` independent ordinates is Gamma with
  shape ``ν`` and the fit is a Gamma GLM with identity link (McCullagh & Nelder, *Generalized
  Linear Models*, 2nd ed., 1989, ch. 8), linear in ``A, N ≥ 0`` for fixed ``σ`` and ``ξ``: all grid
  points are fitted at once by safeguarded Newton steps (:mod:`validation.gamma_fit`);
* ``ν`` is the bin's DFT count over 2 (Hermitian symmetry) and over the window's variance
  inflation ``Σ|c_k|²`` (:data:`HANN_VARIANCE_INFLATION`), bins being two DFT spacings wide so the
  Hann main lobe leaves neighbouring bins nearly independent;
* structure the model does not describe (a texture, a narrow size distribution's form factor)
  shows as a Pearson dispersion above 1, which widens the interval (quasi-likelihood, deviance
  divided by the dispersion) instead of biasing the test;
* the bounds are one-sided at :data:`validation.exposure.FALSE_REJECTION_RATE`: the set of ``σ``
  whose scaled deviance lies within ``z²`` of the minimum.

The noise ``N`` is fitted with the rest, so the bins where a sharp probe would leave detail
above the noise and a blurred one leaves none are evidence too: a blurred frame is told from a
sharp one by the power it lacks, not only by the power it shows. Where the data cannot bound
``σ`` from above (a low dose, few edges), the upper bound is ``inf``: undetermined.

The bounds hold for the model; where a scene departs from it they are biased, not wrong in
sign: on 256² LR frames of the textured families (``benchmarks/bench_blur.py``), whose narrow
size distribution rolls the spectrum off near ``1/d`` faster than any knee, a sharp scan (σ ≈ 0.34
px) measures 0.6–1.1 px (lower bounds ≤ 0.90 px, under the sharp limit) and a 2-px defocus
(2.03 px) 2.1–2.3 px.
"""

from __future__ import annotations

import math

import numpy as np
from pydantic import BaseModel, Field

from validation.exposure import Z_BOUND
from validation.gamma_fit import fit_rows

#: Exponent β of the scene spectrum's tail ``S ∝ f^−β``: a field of particles with sharp
#: outlines has the spectrum of its edges, ``|Ĵ₁(2πfR)/f|² ∝ f^−3`` at frequencies above 1/R
#: (Porod's law in two dimensions; power laws of images: van der Schaaf & van Hateren, *Vision
#: Res.* 36, 1996). Fitting β freely makes it trade against σ: on the families' frames it runs
#: to the flattest β allowed and σ doubles on clean frames. What bends a particle field's
#: spectrum away from ``f^−3`` is its size, not its edges: :data:`CORRELATION_LENGTH_MIN_PX`.
SCENE_BETA = 3.0

#: Shortest scene correlation length ξ fitted, px. The scene is modelled as a random two-phase
#: medium with exponential correlation ``exp(−r/ξ)`` (Debye, Anderson & Brumberger, *J. Appl.
#: Phys.* 28, 679, 1957), whose 2-D spectrum ``(1 + (2πξf)²)^(−3/2)`` is flat below the knee
#: ``1/(2πξ)`` and Porod's ``f^−3`` above it; ``ξ = ∞`` is the bare ``f^−3``. Porod's relation
#: ``1/ξ = L_A / (π φ(1 − φ))`` (boundary length per area ``L_A = 4φ/d`` for discs of diameter
#: ``d`` at cover ``φ``) gives ``ξ = π d (1 − φ)/4``: 1 px is a field of 2.5-px discs at half
#: cover, finer than any particle a frame can size (issue 13: 4–200 px). Profiling ξ lets a
#: frame whose particles are small for its band (a spectrum flat at low frequencies, as on the
#: textured bse and dark families) be fitted without calling its knee blur or its blur a knee:
#: where the two cannot be told apart, the bounds of σ widen.
CORRELATION_LENGTH_MIN_PX = 1.0

#: ξ grid: geometric, this many steps per octave, from :data:`CORRELATION_LENGTH_MIN_PX` to a
#: side over 8 (knee below the band's lowest frequency, :data:`LOWEST_CYCLES`, by 2π), then ∞.
CORRELATION_STEPS_PER_OCTAVE = 2

#: ``Σ_k |c_k|²`` of a 2-D Hann window's normalised squared-window spectrum: in 1-D the
#: coefficients at lags 0, ±1, ±2 are 1, −2/3, 1/6 (``w² = 3/8 − cos/2 + cos2/8``), whose squares sum
#: to 35/18; the 2-D window is separable. A bin's mean periodogram varies as ``P²·Σ|c|²/K`` over ``K``
#: ordinates instead of ``P²/K``.
HANN_VARIANCE_INFLATION = (35.0 / 18.0) ** 2

#: Bin width in DFT spacings (``1/side``): twice the lag at which the Hann correlation falls to 1/6.
BIN_WIDTH_DFT = 2

#: Frames wider than this are binned in wider annuli (a multiple of :data:`BIN_WIDTH_DFT`, the
#: side over this, rounded), keeping ~62 bins: a smooth spectrum needs no more, the fit's cost grows
#: with the bins, and ``ν`` (the ordinates a bin averages) counts the wider bins' degrees of freedom.
#: The window's inflation then errs less on the conservative side (fewer correlated neighbours fall
#: in the next annulus).
BINNED_SIDE_PX = 256

#: Lowest frequency fitted, in cycles per frame side: below it lie the field's gradient and the
#: window's leakage, not the probe.
LOWEST_CYCLES = 4

#: Step of the σ grid the profile likelihood is evaluated on up to :data:`FINE_GRID_END_PX`, px;
#: beyond it 40 geometric steps (a blur that large is out of focus by any limit, only its bound matters).
SIGMA_STEP_PX = 0.02
FINE_GRID_END_PX = 5.0

#: The profile is first evaluated on every this many points of the σ grid (0.1 px), then on every
#: grid point between the coarse neighbours of its minimum and of its two bound crossings, until
#: those no longer move: the same grid points as a full scan wherever the profile has no second
#: dip narrower than 0.1 px (``tests/test_blur.py`` compares the two).
COARSE_STRIDE = 5

#: Largest Gaussian blur σ of a sharp scan, px: it resolves detail of a 4-pixel period (half its
#: Nyquist frequency) with an MTF of at least 10 %: ``exp(−2π²σ²/4²) ≥ 0.1``, so
#: ``σ ≤ sqrt(8 ln 10)/π = 1.366`` px. The default of both focus limits of
#: :class:`validation.ValidationConfig`.
SHARP_SIGMA_LIMIT_PX = math.sqrt(8.0 * math.log(10.0)) / math.pi


class BlurEstimate(BaseModel):
    """Gaussian blur sigma of one frame in its own pixels, with one-sided confidence bounds."""

    sigma_px: float = Field(ge=0, description="maximum-likelihood sigma, px (inf: no detail above the noise)")
    lower_px: float = Field(ge=0, description="lower one-sided bound at the false-rejection rate, px")
    upper_px: float = Field(ge=0, description="upper one-sided bound, px; inf where the data do not bound it")
    bins: int = Field(ge=0, description="frequency bins fitted")
    dispersion: float = Field(ge=0, description="Pearson χ²/dof of the best fit (1 for a model the data follow)")
    correlation_length_px: float = Field(
        gt=0, description="scene correlation length ξ of the best fit, px (inf: the bare f^−3 scene)"
    )


def _radial_spectrum(image: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(bin centres in cycles/px, mean Hann periodogram, independent ordinates ν) of the fitted bins."""
    x = np.asarray(image, dtype=np.float64)
    h, w = x.shape
    window = np.outer(np.hanning(h), np.hanning(w))
    power = np.abs(np.fft.fft2((x - x.mean()) * window)) ** 2 / (window**2).sum()
    f = np.hypot(np.fft.fftfreq(h)[:, None], np.fft.fftfreq(w)[None, :]).ravel()
    side = min(h, w)
    width = BIN_WIDTH_DFT * max(1, round(side / BINNED_SIDE_PX)) / side
    edges = np.arange(LOWEST_CYCLES / side, 0.5 + 1e-12, width)
    idx = np.digitize(f, edges) - 1
    inside = (idx >= 0) & (idx < edges.size - 1)
    n_bins = edges.size - 1
    counts = np.bincount(idx[inside], minlength=n_bins).astype(np.float64)
    mean_power = np.bincount(idx[inside], power.ravel()[inside], n_bins) / np.maximum(counts, 1.0)
    centres = 0.5 * (edges[1:] + edges[:-1])
    keep = counts > 0
    return centres[keep], mean_power[keep], counts[keep] / (2.0 * HANN_VARIANCE_INFLATION)


def correlation_lengths_px(side: int) -> np.ndarray:
    """The scene correlation lengths ξ profiled for a frame of ``side`` px (:data:`CORRELATION_LENGTH_MIN_PX`), ∞ last."""
    octaves = math.log2(max(side / 8.0, CORRELATION_LENGTH_MIN_PX) / CORRELATION_LENGTH_MIN_PX)
    steps = math.floor(octaves * CORRELATION_STEPS_PER_OCTAVE + 1e-9)
    finite = CORRELATION_LENGTH_MIN_PX * 2.0 ** (np.arange(steps + 1) / CORRELATION_STEPS_PER_OCTAVE)
    return np.append(finite, math.inf)


def _scene_spectra(f: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """``(len(lengths), f.size)``: ``(1 + (2πξf)²)^(−β/2)`` per ξ, and ``f^−β`` for ξ = ∞ (same tail)."""
    rows = [
        f ** (-SCENE_BETA) if math.isinf(xi) else (1.0 + (2.0 * math.pi * xi * f) ** 2) ** (-SCENE_BETA / 2.0)
        for xi in lengths
    ]
    return np.array(rows)


def _sigma_grid(side: int) -> np.ndarray:
    """σ values profiled, px: :data:`SIGMA_STEP_PX` steps to :data:`FINE_GRID_END_PX`, then 40 geometric ones to ``side/8``."""
    end = side / 8.0
    grid = np.arange(0.0, min(end, FINE_GRID_END_PX) + SIGMA_STEP_PX / 2, SIGMA_STEP_PX)
    if end > FINE_GRID_END_PX:
        grid = np.concatenate([grid, np.geomspace(FINE_GRID_END_PX, end, 41)[1:]])
    return grid


def _profile_at(sigmas: np.ndarray, f: np.ndarray, y: np.ndarray, nu: np.ndarray, scenes: np.ndarray):
    """(deviance minimised over A, N and the scene rows, Pearson χ², index of the best scene) at each σ."""
    mtf2 = np.exp(-4.0 * math.pi**2 * sigmas[:, None] ** 2 * f * f)
    dev, pearson = fit_rows(scenes[:, None, :] * mtf2[None, :, :], y, nu)
    best = np.argmin(dev, axis=0)
    cols = np.arange(sigmas.size)
    return dev[best, cols], pearson[best, cols], best


def _decision(dev: np.ndarray, pearson: np.ndarray, dof: int) -> tuple[int, float, int, int]:
    """(best index, dispersion, first and last index within the bound) over the finite entries of ``dev``."""
    best = int(np.nanargmin(dev))
    dispersion = float(pearson[best]) / dof
    within = np.flatnonzero((dev - dev[best]) / max(1.0, dispersion) <= Z_BOUND**2)  # NaN compares False
    return best, dispersion, int(within[0]), int(within[-1])


def blur_estimate(image: np.ndarray, correlation_lengths: np.ndarray | None = None) -> BlurEstimate:
    """Maximum-likelihood Gaussian blur sigma of ``image`` (px) and its one-sided profile-likelihood bounds.

    The model is ``A·S_ξ(f)·exp(−4π²σ²f²) + N`` with the scene spectrum ``S_ξ`` of
    :data:`CORRELATION_LENGTH_MIN_PX` (ξ profiled over :func:`correlation_lengths_px`, or over
    ``correlation_lengths`` if given: ``[inf]`` is the bare ``f^−3`` scene). σ is scanned on a
    grid of :data:`SIGMA_STEP_PX` up to the frame side over 8, where the MTF² at the lowest fitted
    frequency (:data:`LOWEST_CYCLES`) is ``e^{−π²}``: beyond it the fitted band holds no trace of
    the scene (coarse, then refined: :data:`COARSE_STRIDE`); the bounds are where the profile
    deviance, divided by the dispersion where above 1, exceeds its minimum by ``z²``
    (:data:`validation.exposure.Z_BOUND`). A bound at the end of the grid is ``inf``. Frames
    under 16 px a side carry no measurable blur: ``inf`` with no bins.
    """
    x = np.asarray(image, dtype=np.float64)
    if min(x.shape) < 16 or not np.isfinite(x).all() or x.std() == 0:
        return BlurEstimate(
            sigma_px=math.inf, lower_px=0.0, upper_px=math.inf, bins=0, dispersion=0.0, correlation_length_px=math.inf
        )
    f, y, nu = _radial_spectrum(x)
    lengths = correlation_lengths_px(min(x.shape)) if correlation_lengths is None else np.asarray(correlation_lengths, float)
    scenes = _scene_spectra(f, lengths)
    grid = _sigma_grid(min(x.shape))
    dev, pearson, scene = np.full(grid.size, np.nan), np.full(grid.size, np.nan), np.zeros(grid.size, dtype=int)
    todo = np.unique(np.append(np.arange(0, grid.size, COARSE_STRIDE), grid.size - 1))
    dof = max(1, f.size - 3 - (lengths.size > 1))  # A, N, σ and ξ where it is fitted
    while todo.size:
        dev[todo], pearson[todo], scene[todo] = _profile_at(grid[todo], f, y, nu, scenes)
        marks = _decision(dev, pearson, dof)
        near = np.concatenate([np.arange(i - COARSE_STRIDE + 1, i + COARSE_STRIDE) for i in (marks[0], marks[2], marks[3])])
        near = np.unique(near[(near >= 0) & (near < grid.size)])
        todo = near[np.isnan(dev[near])]
    best, dispersion, first, last = _decision(dev, pearson, dof)
    return BlurEstimate(
        sigma_px=math.inf if best == grid.size - 1 else float(grid[best]),
        lower_px=float(grid[first]),
        upper_px=math.inf if last == grid.size - 1 else float(grid[last]),
        bins=int(f.size),
        dispersion=dispersion,
        correlation_length_px=float(lengths[scene[best]]),
    )
