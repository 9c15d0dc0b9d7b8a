"""Particle size distributions (PSD): D-values, span, log-spaced histogram, bootstrap CIs.

Conventions
-----------
* Sizes are equivalent circular diameters (ECD, µm) measured by static image analysis
  (ISO 13322-1:2014, *Particle size analysis — Image analysis methods — Part 1: Static
  image analysis methods*).
* Image analysis counts particles, so its native distribution is **number-weighted**
  (ISO 9276-1:1998, quantity type r = 0). Laser diffraction and most guidances report
  **volume-weighted** distributions (r = 3): here each particle is weighted by the volume of
  the sphere of the same ECD, which is ∝ ECD³ (the constant π/6 cancels in every fraction).
  The weighting is always stated in the result.
* D10, D50, D90 are the sizes below which 10 %, 50 %, 90 % of the (number or volume)
  distribution lies (ISO 9276-2:2014, cumulative distribution Q_r(x)); the relative width is
  ``span = (D90 − D10) / D50``.

:func:`d_values` is the one percentile function of the project; everything that reports a
D-value (analysis, per-unit values for PBE, bootstrap, dashboard) goes through it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
from pydantic import BaseModel, Field

from semqa.errors import InputError

Weighting = Literal["number", "volume"]

#: Quantiles reported as D10, D50, D90.
STANDARD_QUANTILES = (0.1, 0.5, 0.9)

#: Default histogram resolution: 10 log-spaced bins per decade of size (ratio 10^0.1 ≈ 1.26
#: between edges, close to the √2 … ∛2 geometric progressions of ISO 9276-1 / ISO 565 sieves).
DEFAULT_BINS_PER_DECADE = 10

#: Bootstrap replicates × particles processed at once; bounds memory to ~ a few 10 MB.
_BOOTSTRAP_CHUNK_ELEMENTS = 2_000_000


class CountGuidance(BaseModel):
    """Particle counts below which percentiles are not repeatable; below them we *warn*.

    Sources and reasoning (the one place these thresholds are documented):

    * ``volume_percentiles = 61 000`` and ``volume_mean = 6 000``: ISO 13322-1 (scope and
      Annex A): for a log-normal distribution with geometric standard deviation 1.6, over
      6 000 particles must be measured for a repeatable volume-mean diameter, and at least
      61 000 for reliable volume percentiles such as D90. Volume weighting lets the few
      largest particles dominate, hence the large numbers.
    * ``number_percentiles = 500``: our choice, from the asymptotic variance of a sample
      quantile, p(1 − p) / (n f(x_p)²) (Serfling, *Approximation Theorems of Mathematical
      Statistics*, 1980, §2.3): for a log-normal with σ_g = 1.6 (ln σ_g ≈ 0.47), 500 particles give a relative
      standard error of about 2.6 % for the number D50 and 3.6 % for D10/D90, i.e. 95 % CIs of
      roughly ±5–7 %, the repeatability image analysis is usually asked for. ISO 13322-1
      gives no lower number for number-based percentiles.
    """

    number_percentiles: int = Field(500, ge=1, description="particles for stable number-weighted D10/D50/D90")
    volume_mean: int = Field(6000, ge=1, description="particles for a repeatable volume-mean diameter (ISO 13322-1)")
    volume_percentiles: int = Field(61000, ge=1, description="particles for reliable volume-weighted percentiles (ISO 13322-1 Annex A)")


#: Default thresholds used by :func:`compute_psd` and :func:`count_warnings`.
COUNT_GUIDANCE = CountGuidance()


class Histogram(BaseModel):
    """Log-spaced histogram of a PSD in the PSD's weighting."""

    edges_um: list[float] = Field(description="bin edges in µm, log-spaced; len = bins + 1 (empty when n = 0)")
    fraction: list[float] = Field(description="fraction of the total (number or volume) in each bin; sums to 1")
    cumulative: list[float] = Field(description="cumulative undersize fraction at each bin's upper edge (Q_r)")


class PSD(BaseModel):
    """A particle size distribution summary (ISO 9276-2 notation)."""

    weighting: Weighting = Field(description="number (image-analysis counts) or volume (∝ ECD³)")
    n: int = Field(description="number of particles measured")
    d10_um: float | None = None
    d50_um: float | None = None
    d90_um: float | None = None
    span: float | None = Field(None, description="(D90 − D10) / D50")
    ci_level: float = Field(description="confidence level of the bootstrap intervals")
    n_bootstrap: int = Field(0, description="bootstrap resamples behind the intervals (0: none)")
    d10_ci_um: tuple[float, float] | None = None
    d50_ci_um: tuple[float, float] | None = None
    d90_ci_um: tuple[float, float] | None = None
    span_ci: tuple[float, float] | None = None
    histogram: Histogram
    warnings: list[str] = Field(default_factory=list)


def as_sizes(ecd_um: Sequence[float] | np.ndarray, what: str = "ECD") -> np.ndarray:
    """Sizes as a 1-D float array; :class:`InputError` unless all are finite and > 0."""
    x = np.asarray(ecd_um, dtype=float)
    if x.ndim != 1:
        raise InputError(f"{what} values must be a flat list of sizes, got shape {x.shape}")
    if not np.all(np.isfinite(x)):
        raise InputError(f"{what} values contain NaN or infinity")
    if np.any(x <= 0):
        raise InputError(f"{what} values must be positive (µm), got min {x.min():g}")
    return x


def _as_weights(weights: Sequence[float] | np.ndarray | None, n: int) -> np.ndarray:
    if weights is None:
        return np.ones(n)
    w = np.asarray(weights, dtype=float)
    if w.shape != (n,):
        raise InputError(f"weights must have one value per particle ({n}), got shape {w.shape}")
    if not np.all(np.isfinite(w)) or np.any(w < 0):
        raise InputError("weights must be finite and non-negative")
    if n and w.sum() <= 0:
        raise InputError("weights sum to zero: no particle carries any weight")
    return w


def quantity_weights(x: np.ndarray, w: np.ndarray, weighting: Weighting) -> np.ndarray:
    """Per-particle share of the quantity: count (r = 0) or sphere-equivalent volume (r = 3)."""
    if weighting == "number":
        return w
    # Scale by the largest size first so ECD³ cannot overflow or underflow for any unit.
    return w * (x / x.max()) ** 3


def _row_quantiles(x_sorted: np.ndarray, w_sorted: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Weighted quantiles of each row; rows sorted by size, weights > 0.

    Each particle ``i`` of a row occupies the interval ``[C_{i-1}, C_i]`` of the cumulative
    weight ``C`` and is placed at its midpoint ``p_i = (C_i − w_i / 2) / C_n``. The quantile
    at ``q`` interpolates linearly between the two particles whose midpoints bracket ``q``
    and is clamped to the smallest / largest size outside ``[p_1, p_n]``. With equal weights
    this is Hazen's rule (Hyndman & Fan 1996, definition 5; ``numpy.quantile(...,
    method="hazen")``): median-unbiased for continuous data, symmetric in ``q`` and
    ``1 − q``, and it extends to unequal weights (volume weighting, edge-correction
    weights) without special cases, unlike the rank-based definitions 6–9.

    Vectorized over rows: positions of row ``r`` are shifted by ``2r`` so one
    ``searchsorted`` on the flattened array serves all rows.
    """
    rows, n = x_sorted.shape
    cum = np.cumsum(w_sorted, axis=1)
    pos = (cum - 0.5 * w_sorted) / cum[:, -1:]
    offset = 2.0 * np.arange(rows)[:, None]
    flat = (pos + offset).ravel()
    targets = (q[None, :] + offset).ravel()
    k = np.searchsorted(flat, targets, side="left").reshape(rows, q.size) - np.arange(rows)[:, None] * n
    hi = np.clip(k, 0, n - 1)
    lo = np.clip(k - 1, 0, n - 1)
    r = np.arange(rows)[:, None]
    p_lo, p_hi = pos[r, lo], pos[r, hi]
    x_lo, x_hi = x_sorted[r, lo], x_sorted[r, hi]
    gap = p_hi - p_lo
    frac = np.divide(q[None, :] - p_lo, gap, out=np.zeros_like(gap), where=gap > 0)
    frac = np.clip(frac, 0.0, 1.0)
    return x_lo + frac * (x_hi - x_lo)


def d_values(
    ecd_um: Sequence[float] | np.ndarray,
    weighting: Weighting = "number",
    quantiles: Sequence[float] = STANDARD_QUANTILES,
    weights: Sequence[float] | np.ndarray | None = None,
) -> np.ndarray:
    """Sizes at the given cumulative fractions of a number- or volume-weighted PSD.

    Parameters
    ----------
    ecd_um : array_like
        Equivalent circular diameters in µm (positive, finite).
    weighting : {"number", "volume"}
        Number weighting counts particles (image analysis, ISO 9276-1 r = 0); volume
        weighting weights each particle by its sphere-equivalent volume ∝ ECD³ (r = 3).
    quantiles : sequence of float
        Cumulative fractions in [0, 1]; default (0.1, 0.5, 0.9) → D10, D50, D90.
    weights : array_like, optional
        Per-particle weights ≥ 0 multiplying the count, e.g. Miles–Lantuejoul edge-correction
        weights that compensate for the border exclusion of large particles.

    Returns
    -------
    numpy.ndarray
        One size (µm) per quantile; all NaN when there are no particles.

    Notes
    -----
    Interpolation rule (see :func:`_row_quantiles`): particle ``i`` sits at the midpoint of
    its share of the cumulative distribution, ``p_i = (C_i − w_i / 2) / C_n``; quantiles
    interpolate linearly between neighbouring midpoints and are clamped to the extreme
    sizes. For equal weights this is Hazen's rule (Hyndman & Fan 1996, type 5).
    Particles of zero weight carry no quantity and are ignored.
    """
    x = as_sizes(ecd_um)
    if weighting not in ("number", "volume"):
        raise InputError(f"weighting must be 'number' or 'volume', got {weighting!r}")
    w = quantity_weights(x, _as_weights(weights, x.size), weighting) if x.size else np.ones(0)
    q = np.asarray(quantiles, dtype=float)
    if q.ndim != 1 or q.size == 0 or np.any((q < 0) | (q > 1)):
        raise InputError("quantiles must be a non-empty list of fractions in [0, 1]")
    keep = w > 0
    if not keep.any():
        return np.full(q.size, np.nan)
    x, w = x[keep], w[keep]
    order = np.argsort(x, kind="stable")
    return _row_quantiles(x[order][None, :], w[order][None, :], q)[0]


def histogram_edges(ecd_min: float, ecd_max: float, bins_per_decade: int = DEFAULT_BINS_PER_DECADE) -> np.ndarray:
    """Log-spaced bin edges (µm) covering ``[ecd_min, ecd_max]``.

    Edges lie on the fixed grid ``10**(k / bins_per_decade)`` (k integer), so histograms of
    different samples made with the same ``bins_per_decade`` share their edges and can be
    overlaid, or two products can be put on exactly the same bins by passing the pooled
    minimum and maximum.
    """
    if not (np.isfinite(ecd_min) and np.isfinite(ecd_max)) or ecd_min <= 0 or ecd_max < ecd_min:
        raise InputError(f"histogram range must satisfy 0 < min ≤ max, got [{ecd_min}, {ecd_max}]")
    if bins_per_decade < 1:
        raise InputError("bins_per_decade must be at least 1")
    lo = np.floor(np.log10(ecd_min) * bins_per_decade + 1e-9)
    hi = np.ceil(np.log10(ecd_max) * bins_per_decade - 1e-9)
    hi = max(hi, lo + 1)
    return 10.0 ** (np.arange(lo, hi + 1) / bins_per_decade)


def _histogram(x: np.ndarray, w: np.ndarray, edges: np.ndarray | None) -> Histogram:
    if x.size == 0:
        return Histogram(edges_um=[] if edges is None else list(map(float, edges)), fraction=[], cumulative=[])
    if edges is None:
        edges = histogram_edges(float(x.min()), float(x.max()))
    edges = np.asarray(edges, dtype=float)
    if edges.ndim != 1 or edges.size < 2 or np.any(np.diff(edges) <= 0) or edges[0] <= 0:
        raise InputError("histogram edges must be at least two increasing positive sizes")
    counts, _ = np.histogram(x, bins=edges, weights=w)
    total = w.sum()
    fraction = counts / total
    return Histogram(
        edges_um=edges.tolist(), fraction=fraction.tolist(), cumulative=np.cumsum(fraction).tolist()
    )


def count_warnings(n: int, weighting: Weighting, guidance: CountGuidance = COUNT_GUIDANCE) -> list[str]:
    """Warnings when ``n`` particles are too few for repeatable percentiles (ISO 13322-1).

    Never refuses: the caller reports the numbers with the warning attached.
    """
    if n == 0:
        return ["no particles: D-values are undefined"]
    if weighting == "number" and n < guidance.number_percentiles:
        return [
            f"only {n} particles: number-weighted D-values are not repeatable below "
            f"{guidance.number_percentiles} particles (ISO 13322-1; see semqa.stats.psd.CountGuidance)"
        ]
    if weighting == "volume" and n < guidance.volume_percentiles:
        what = "the volume-mean diameter nor " if n < guidance.volume_mean else ""
        return [
            f"only {n} particles: neither {what}volume-weighted percentiles (D90 above all) are repeatable; "
            f"ISO 13322-1 Annex A asks ≥ {guidance.volume_percentiles} particles "
            f"(≥ {guidance.volume_mean} for the volume mean) at σg = 1.6"
        ]
    return []


#: Most bootstrap resamples a request may ask for. Percentile intervals need about 1000
#: (Efron & Tibshirani, *An Introduction to the Bootstrap*, 1993, §19.3); at 10 000 the Monte
#: Carlo error of a 95 % interval's coverage is √(0.025 · 0.975 / 10⁴) ≈ 0.16 percentage points,
#: so more resamples only cost time (and the work grows as resamples × particles).
MAX_BOOTSTRAP: int = 10_000


def _bootstrap(
    x_sorted: np.ndarray, w_sorted: np.ndarray, q: np.ndarray, n_bootstrap: int, rng: np.random.Generator
) -> np.ndarray:
    """D-values of ``n_bootstrap`` resamples of the particles (rows: resamples)."""
    n = x_sorted.size
    out = np.empty((n_bootstrap, q.size))
    chunk = max(1, _BOOTSTRAP_CHUNK_ELEMENTS // n)
    for start in range(0, n_bootstrap, chunk):
        b = min(chunk, n_bootstrap - start)
        # Sorting the drawn indices sorts the resample, since the particles are pre-sorted.
        idx = np.sort(rng.integers(0, n, size=(b, n)), axis=1)
        out[start : start + b] = _row_quantiles(x_sorted[idx], w_sorted[idx], q)
    return out


def compute_psd(
    ecd_um: Sequence[float] | np.ndarray,
    weighting: Weighting = "number",
    *,
    weights: Sequence[float] | np.ndarray | None = None,
    n_bootstrap: int = 1000,
    ci_level: float = 0.95,
    seed: int = 0,
    bins: Sequence[float] | np.ndarray | None = None,
    guidance: CountGuidance = COUNT_GUIDANCE,
) -> PSD:
    """PSD summary of a set of particles: D10/D50/D90, span, histogram and bootstrap CIs.

    Parameters
    ----------
    ecd_um : array_like
        Equivalent circular diameters in µm; may be empty (n = 0 is a valid result).
    weighting : {"number", "volume"}
        See :func:`d_values`.
    weights : array_like, optional
        Per-particle weights (e.g. Miles–Lantuejoul edge correction); resampled with the
        particles.
    n_bootstrap : int
        Bootstrap resamples; 0 disables the intervals.
    ci_level : float
        Two-sided confidence level of the intervals.
    seed : int
        Seed of the resampling; equal inputs and seed give equal results.
    bins : array_like, optional
        Fixed histogram edges (µm), e.g. from :func:`histogram_edges` on pooled data so two
        products share bins; default: :func:`histogram_edges` over the data.
    guidance : CountGuidance
        Count thresholds for the ISO 13322-1 warnings.

    Notes
    -----
    Confidence intervals are percentile bootstrap intervals (Efron & Tibshirani, *An
    Introduction to the Bootstrap*, 1993, ch. 13): the particles (with their weights) are
    resampled with replacement, the D-values and span are recomputed for each resample with
    the same rule as the point estimate, and the interval is the (α/2, 1 − α/2) quantiles of
    the replicates. Resampling particles treats them as independent draws; clustering by
    image is not accounted for (between-image variation is what PBE's lot/unit design is for).
    """
    x = as_sizes(ecd_um)
    w_user = _as_weights(weights, x.size)
    if not 0 < ci_level < 1:
        raise InputError(f"ci_level must be between 0 and 1, got {ci_level}")
    if n_bootstrap < 0:
        raise InputError("n_bootstrap must be ≥ 0")
    if weighting not in ("number", "volume"):
        raise InputError(f"weighting must be 'number' or 'volume', got {weighting!r}")
    bins_arr = None if bins is None else np.asarray(bins, dtype=float)
    warnings = count_warnings(x.size, weighting, guidance)
    if x.size == 0:
        return PSD(weighting=weighting, n=0, ci_level=ci_level, histogram=_histogram(x, x, bins_arr), warnings=warnings)

    w = quantity_weights(x, w_user, weighting)
    keep = w > 0
    order = np.argsort(x[keep], kind="stable")
    xs, ws = x[keep][order], w[keep][order]
    q = np.asarray(STANDARD_QUANTILES)
    d10, d50, d90 = d_values(x, weighting, STANDARD_QUANTILES, weights=w_user)
    psd = PSD(
        weighting=weighting,
        n=int(x.size),
        d10_um=float(d10),
        d50_um=float(d50),
        d90_um=float(d90),
        span=float((d90 - d10) / d50),
        ci_level=ci_level,
        histogram=_histogram(x, w, bins_arr),
        warnings=warnings,
    )
    if bins_arr is not None and (x.min() < bins_arr[0] or x.max() > bins_arr[-1]):
        psd.warnings.append("some particles lie outside the given histogram edges; fractions cover only those inside")
    if n_bootstrap == 0:
        return psd
    reps = _bootstrap(xs, ws, q, n_bootstrap, np.random.default_rng(seed))
    spans = (reps[:, 2] - reps[:, 0]) / reps[:, 1]
    alpha = 1.0 - ci_level
    lo_hi = [alpha / 2, 1 - alpha / 2]
    ci = np.quantile(np.column_stack([reps, spans]), lo_hi, axis=0)
    psd.n_bootstrap = n_bootstrap
    psd.d10_ci_um, psd.d50_ci_um, psd.d90_ci_um, psd.span_ci = (
        (float(ci[0, j]), float(ci[1, j])) for j in range(4)
    )
    return psd
