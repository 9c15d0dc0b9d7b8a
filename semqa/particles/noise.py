"""Noise model of an SEM frame, estimated from the frame itself.

An SEM detector counts electrons: the noise of a pixel is Poisson in the number of
electrons, so its variance grows with its signal, plus signal-independent read-out noise.
In image units this is the Poisson–Gaussian model ``var = a·mean + b`` (``a`` the gain, image
units per electron; ``b`` the read-out variance). :func:`fit_noise_model` estimates ``a`` and
``b`` from the image's local statistics, and :func:`stabilize` applies the generalized
Anscombe transform, after which the noise has unit variance everywhere, whatever the signal
(Murtagh, Starck & Bijaoui, *Astron. Astrophys. Suppl.* 112, 1995; Mäkitalo & Foi, *IEEE
Trans. Image Process.* 22(1), 2013). Detection tests run on the stabilised image, so one
threshold holds from a few to thousands of electrons per pixel, on bright and dark pixels.

Noise that was filtered after it arose (a detector's bandwidth, interpolation,
super-resolution) is correlated between neighbouring pixels: the variance of a sum of N
pixels is then larger than N times the pixel variance. :func:`fit_noise_model` measures that
inflation from block means (the variance of the mean of ``m × m`` white-noise pixels is
``1/m²`` of the pixel variance; the ratio to it is the inflation factor for sums over regions
of that size and larger, e.g. Bayley & Hammersley, *J. R. Stat. Soc. Suppl.* 8, 1946).
"""

from __future__ import annotations

import math

import numpy as np
from pydantic import BaseModel, Field
from scipy import ndimage

from semqa.particles.primitives import median, nonnegative_line_fit

#: Immerkær's operator: the difference of two Laplacians cancels structure up to second order;
#: its response to white noise of sd s has sd 6·s (the kernel's L2 norm).
_IMMERKAER = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], dtype=np.float32)

#: Bins of local mean in which the noise variance is estimated.
_N_BINS = 16


class NoiseModel(BaseModel):
    """``var = gain·mean + read_variance`` in image units, and the correlation of the noise."""

    gain: float = Field(ge=0, description="image units per detected electron (Poisson part of the variance)")
    read_variance: float = Field(ge=0, description="signal-independent variance, image units²")
    stabilized_sd: float = Field(gt=0, description="sd of the noise of the stabilised image (1 when the model holds)")
    sum_inflation: float = Field(
        ge=1, description="sd of a sum of N noise pixels over sqrt(N) times the pixel sd (1 for white noise)"
    )
    source: str = Field(
        "Poisson–Gaussian fit of Immerkær residuals against local mean; generalized Anscombe transform",
        description="how the model was obtained",
    )

    def electrons_per_unit(self) -> float | None:
        """Electrons a pixel of value 1.0 collects (1 / gain), None without a Poisson part."""
        return 1.0 / self.gain if self.gain > 0 else None


def immerkaer_residual(image: np.ndarray) -> np.ndarray:
    """Immerkær residual per pixel, scaled to the noise sd (white noise: unit-variance scale)."""
    return ndimage.convolve(image, _IMMERKAER, mode="reflect")[1:-1, 1:-1] / 6.0


def robust_sd(values: np.ndarray) -> float:
    """sd of zero-mean Gaussian values (residuals) from their median absolute value, 1.4826 · median |x|
    (edges and outliers barely move it); :func:`semqa.particles.contacts.mad_sd` is the same scale
    about the values' own median, for values that are not centred."""
    return float(median(np.abs(values)) * 1.4826)


def _block_mean(image: np.ndarray, m: int) -> np.ndarray:
    h, w = image.shape[0] // m, image.shape[1] // m
    return image[: h * m, : w * m].reshape(h, m, w, m).mean(axis=(1, 3))


def representation_variance(image: np.ndarray) -> float:
    """Variance of the rounding of a ``float32`` value at the image's largest magnitude.

    A stored value is known to its last bit: rounding to a grid of step ``q`` adds uniform
    noise of variance ``q²/12`` (Widrow & Kollár, *Quantization Noise*, Cambridge 2008,
    ch. 4), with ``q`` the spacing of float32 values at ``max|x|``. It is the least noise any
    image has, so a noise-free frame gets this variance, not zero.
    """
    top = float(np.max(np.abs(image))) if np.size(image) else 0.0
    # (at least at float32 eps: the variance of an all-zero frame must stay representable)
    q = float(np.spacing(np.float32(max(top, float(np.finfo(np.float32).eps)))))
    return q * q / 12.0


def _poisson_part_negligible(gain: float, image: np.ndarray) -> bool:
    """Whether the Poisson variance ``gain·x`` stays below the representation variance at every
    pixel: such a gain is no measurable noise, and ``2/gain`` in the transform would overflow."""
    top = float(np.max(np.abs(image))) if np.size(image) else 0.0
    return gain * top <= representation_variance(image)


def stabilize(image: np.ndarray, model: NoiseModel) -> np.ndarray:
    """Generalized Anscombe transform: unit noise variance for ``var = a·mean + b``.

    ``f(x) = (2/a)·sqrt(a·x + 3a²/8 + b)`` (Mäkitalo & Foi 2013, eq. 2 with the Gaussian mean
    0), which for pure Poisson counts (a = 1, b = 0) is Anscombe's ``2·sqrt(x + 3/8)``; without a
    (measurable) Poisson part, ``x / sqrt(b)``, ``b`` at least the representation variance
    (:func:`representation_variance`), so a noise-free frame gives finite, bounded values.
    """
    x = np.asarray(image, dtype=np.float32)
    a, b = model.gain, model.read_variance
    if a <= 0 or _poisson_part_negligible(a, x):
        return x / np.float32(math.sqrt(max(b, representation_variance(x))))
    return np.float32(2.0 / a) * np.sqrt(np.maximum(a * x + np.float32(0.375 * a * a + b), 0.0))


def _equal_count_bins(key: np.ndarray, values: np.ndarray) -> tuple[list[float], list[np.ndarray]]:
    """Median of ``key`` and the ``values`` in each of :data:`_N_BINS` bins of equal count by the
    rank of ``key``, ties ranked by position: the bins of
    ``numpy.array_split(numpy.argsort(key, kind="stable"), _N_BINS)``, each median as
    ``numpy.median`` of the bin's keys.

    A bin is a rank range; a stable sort of the pixels by key also orders them within each bin,
    which no statistic of a bin needs. The sorted keys alone (a sort of the values, several times
    faster than a partition at the ~50 ranks needed) give the values at the bin boundaries and at
    each bin's middle ranks; a pixel lies past a boundary when its key is larger, or equal and
    later than the equal keys that still fit before it. The pixels are then grouped by bin with a
    radix sort of the 8-bit bin number (within a bin by position: the order no statistic of a bin
    depends on).
    """
    q, r = divmod(key.size, _N_BINS)
    edges = np.concatenate([[0], np.cumsum([q + 1] * r + [q] * (_N_BINS - r))])
    inner = edges[1:-1][(edges[1:-1] > 0) & (edges[1:-1] < key.size)]
    lo, hi = (edges[:-1] + edges[1:] - 1) // 2, (edges[:-1] + edges[1:]) // 2
    ranks = np.unique(np.concatenate([inner - 1, lo, hi]))
    ranks = ranks[(ranks >= 0) & (ranks < key.size)]
    ordered = np.sort(key)  # the value at each rank, as numpy.partition(key, ranks)[ranks] gives it
    at = dict(zip(ranks.tolist(), ordered[ranks].tolist())) if ranks.size else {}
    # (the mean of the middle two in the key's dtype, as numpy.median takes it)
    medians = [float(np.mean([at[a], at[b]], dtype=key.dtype)) if b in at else float("nan") for a, b in zip(lo.tolist(), hi.tolist())]
    cut = np.array([at[i - 1] for i in inner.tolist()], dtype=key.dtype)
    # Boundaries strictly below the key: ``numpy.searchsorted(cut, key, side="left")``, counted by one
    # comparison per boundary (a binary search per pixel costs several times more for 15 boundaries).
    bins = np.zeros(key.shape, dtype=np.uint8)
    for value in cut:
        bins += key > value
    for value in np.unique(cut):
        # Keys below and up to the boundary value, counted in the sorted keys: equal keys straddle
        # a boundary only when more of them exist than fit before it, else none moves up.
        before = int(np.searchsorted(ordered, value, side="left"))
        upto = int(np.searchsorted(ordered, value, side="right"))
        straddled = [rank for rank in inner[cut == value].tolist() if rank < upto]
        if straddled:
            ties = np.flatnonzero(key == value)
            for rank in straddled:
                bins[ties[rank - before :]] += 1
    groups = np.split(values[np.argsort(bins, kind="stable")], edges[1:-1])
    return medians, groups


def fit_noise_model(image: np.ndarray, max_side: int = 1024, valid: np.ndarray | None = None) -> NoiseModel:
    """Fit ``var = a·mean + b`` to the image's own noise.

    Every pixel gives a local mean (3 × 3) and an Immerkær residual; in 16 bins of equal
    pixel count over the local mean, the residual's robust sd gives the noise variance at that
    signal, and ``a, b ≥ 0`` are the non-negative least-squares line through them. Structure
    adds to the residual only at edges, which the median in each bin ignores. A central crop
    of at most ``max_side²`` pixels is used (enough samples of stationary noise).

    Parameters
    ----------
    image : numpy.ndarray
        2-D float image (any linear scale).
    max_side : int
        Side of the central crop the fit uses.
    valid : numpy.ndarray, optional
        Boolean mask of pixels whose values are measurements; a pixel enters the fit only
        when its whole 3 × 3 window is valid (e.g. not clipped at 0 or the top code, where
        the variance is censored and would bend the line). At a few electrons per pixel this
        selects windows without zero counts, which biases the low-signal bins: a known limit.

    Returns
    -------
    NoiseModel
        The fitted model, with the stabilised image's measured noise sd and the inflation of
        the sd of sums by correlated noise.
    """
    r0, c0 = max(0, (image.shape[0] - max_side) // 2), max(0, (image.shape[1] - max_side) // 2)
    crop = np.asarray(image[r0 : r0 + max_side, c0 : c0 + max_side], dtype=np.float32)
    resid = immerkaer_residual(crop).ravel()
    mean = ndimage.uniform_filter(crop, 3, mode="reflect")[1:-1, 1:-1].ravel()
    if valid is not None:
        window_ok = ndimage.binary_erosion(np.asarray(valid[r0 : r0 + max_side, c0 : c0 + max_side], dtype=bool))
        keep = window_ok[1:-1, 1:-1].ravel()
        if np.count_nonzero(keep) >= 16 * _N_BINS:
            resid, mean = resid[keep], mean[keep]
    means, variances, weights = [], [], []
    for values, chunk in zip(*_equal_count_bins(mean, resid)):
        if chunk.size < 16:
            continue
        means.append(values)
        variances.append(robust_sd(chunk) ** 2)
        weights.append(math.sqrt(chunk.size))
    m, v, w = np.array(means), np.array(variances), np.array(weights)
    # Relative residuals: variance estimates of n samples have relative sd sqrt(2/n), the same
    # in every bin, so each row is divided by its own variance scale.
    scale = np.maximum(v, 1e-30)
    a, b = nonnegative_line_fit(m, v, (w / scale) ** 2)
    # A noise-free frame (e.g. a rendered or perfectly super-resolved one) has residuals of
    # zero in most bins: the least noise it can have is that of its stored values.
    floor = representation_variance(crop)
    if _poisson_part_negligible(float(a), crop):
        a = 0.0
    b = max(float(b), floor) if a <= 0 else float(b)
    model = NoiseModel(gain=float(a), read_variance=float(b), stabilized_sd=1.0, sum_inflation=1.0)
    z = stabilize(crop, model)
    sd1 = robust_sd(immerkaer_residual(z))
    if not sd1 > 0:
        # A flat (noise-free) image: unit scale, nothing will be significant against it.
        return model.model_copy(update={"stabilized_sd": 1.0})
    return model.model_copy(update={"stabilized_sd": sd1, "sum_inflation": sum_inflation(z, sd1)})


def sum_inflation(
    z: np.ndarray, pixel_sd: float, substrate: np.ndarray | None = None, block: int = 4, fallback: float = 1.0
) -> float:
    """sd per sqrt(N) of sums of N ≥ ``block²`` noise pixels of ``z``, over ``pixel_sd`` (≥ 1).

    The means of ``block × block`` blocks are differenced with their right and lower
    neighbours: a difference of two independent block means has variance ``2·v_b``, and
    ``block²·v_b`` is the variance per pixel that sums over regions of ``block²`` pixels or
    more see (``pixel_sd²`` for white noise). Differences cancel the substrate level and its
    slow unevenness; their robust sd (median absolute value) ignores the few pairs that cross
    a particle edge. With ``substrate`` (a mask), only blocks wholly inside it count.
    ``fallback`` is returned where fewer than 50 differences remain (a caller that knows the
    noise is correlated passes a bound, not the white-noise 1).
    """
    h, w = z.shape[0] // block, z.shape[1] // block
    if h < 2 or w < 2:
        return fallback
    means = _block_mean(z, block)
    inside = np.ones((h, w), dtype=bool) if substrate is None else _block_mean(substrate.astype(np.float32), block) >= 1.0
    diffs = np.concatenate([
        (means[:, 1:] - means[:, :-1])[inside[:, 1:] & inside[:, :-1]],
        (means[1:, :] - means[:-1, :])[inside[1:, :] & inside[:-1, :]],
    ])
    if diffs.size < 50:
        return fallback
    v_b = robust_sd(diffs) ** 2 / 2.0
    return max(1.0, block * math.sqrt(v_b) / pixel_sd)
