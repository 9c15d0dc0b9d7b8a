"""Statistical, scale-aware detection: where does a frame hold particles, and of which polarity.

A particle of contrast ``c`` (in noise standard deviations per pixel) covering N pixels
carries evidence ``c·sqrt(N)``: its significance grows with its area, so a per-pixel
threshold discards every particle of a noisy scan that an area test keeps. The test here:

1. The frame is variance-stabilised (:mod:`semqa.particles.noise`): unit noise per pixel at
   any signal, so one threshold holds from ~10 to thousands of electrons per pixel.
2. It is filtered with a difference of Gaussians (DoG, centre ``s``, surround ``3s``) at
   scales ``s = 1, 2, 4, …`` px (Lindeberg, *Int. J. Comput. Vision* 30(2), 1998): each
   scale is a matched filter for blobs of diameter ≈ 3–4 s, and the surround removes the
   substrate level and any unevenness slower than the blob. Each response is divided by its
   noise sd, ``‖DoG_s‖₂ × σ_sum`` (``σ_sum`` the per-√N sd of sums of the stabilised noise:
   its pixel sd for white noise, the shot noise of a raw scan; larger where the frame's noise is
   correlated, :func:`null_sum_inflation`), so under the null (no particle) it is a standard
   normal variable at every pixel and scale.
3. A pixel is significant when its largest response over the scales exceeds ``k``, with
   ``k`` from a false-detection budget per image by the Bonferroni bound over all
   ``2 × pixels × scales`` tests (both polarities): ``k = Φ⁻¹(1 − ε / (2 n_px n_scales))``
   (at ε = 0.05 and a 512² frame, 6 scales: k ≈ 5.5). Neighbouring tests are positively correlated, so the
   bound is conservative: on pure noise the expected number of false seeds is below ε.
   This is the *a contrario* "number of false alarms" criterion (Desolneux, Moisan & Morel,
   *From Gestalt Theory to Image Analysis*, Springer 2008, ch. 4).
4. Polarity (bright particles on a darker substrate, as SE; or dark on bright, as a
   bright substrate in BSE): particles are the minority phase of a dispersion prepared for
   sizing (ISO 13322-1 asks for separated particles), so at each scale the responses have a
   long tail on the particles' side; a blob's centre responds more strongly than the
   surround lobe the DoG puts around it, and a step edge responds symmetrically. Each scale's
   tilt is the sum of the 0.5 % and 99.5 % quantiles of its response; a quantile of a map whose
   responses are independent over areas of about s² has a sampling sd proportional to s, so
   the tilts are combined in units of that sd (a Stouffer sum, weights 1/s) and its sign
   decides. Unweighted, the coarsest scales — a handful of independent values, reading the
   field's arrangement and illumination rather than the particles — outvoted the finer ones
   (4-px faceted particles at 100 e⁻/px, seed 13: tilts +0.85, +1.05, +0.49, −0.44, −2.55 at
   1–16 px gave the substrate as the particles).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from scipy import ndimage, special

from semqa.particles.noise import NoiseModel, immerkaer_residual, robust_sd, sum_inflation
from semqa.particles.primitives import max_filter_square

#: Surround-to-centre ratio of the DoG.
SURROUND = 3.0

#: Largest DoG centre scale, as a fraction of the frame's shorter side (the surround must fit).
MAX_SCALE_FRACTION = 1.0 / 12.0

#: Lag-1 autocorrelation, along either axis, of the Immerkær residual of white noise: the
#: operator is ``k ⊗ k`` with ``k = (1, −2, 1)``, and ``Σ k_i k_(i+1) / Σ k_i² = −4/6``.
WHITE_RESIDUAL_CORRELATION = -2.0 / 3.0

#: One-sided level (sd of the estimate) above which a residual correlation shows noise
#: correlated between neighbours; 3 sd: a white frame is taken for correlated in 0.27 % of
#: frames (two axes), which only costs it the conservative substrate estimate.
WHITENESS_Z = 3.0

#: Strips of rows the residual is cut into for the sampling sd of its correlations (batch means), at most.
_WHITENESS_STRIPS = 16


@dataclass(frozen=True)
class Significance:
    """Per-pixel evidence for particles in a frame.

    ``bright`` / ``dark``: the largest DoG response over the scales for bright / dark blobs,
    in null standard deviations, and ``bright_bits`` / ``dark_bits`` the scales at which it is
    significant (bit j set: ``scales[j]``). ``threshold``: the ``k`` a pixel must reach. ``polarity``: +1 bright
    particles, −1 dark, 0 none significant. ``scales``: the DoG centre scales, px.
    """

    bright: np.ndarray
    dark: np.ndarray
    bright_bits: np.ndarray
    dark_bits: np.ndarray
    threshold: float
    polarity: int
    scales: tuple[float, ...]

    @property
    def seeds(self) -> np.ndarray:
        """Pixels where particles of the frame's polarity are significant."""
        if self.polarity == 0:
            return np.zeros(self.bright.shape, dtype=bool)
        return (self.bright if self.polarity > 0 else self.dark) >= self.threshold

    @property
    def seed_bits(self) -> np.ndarray:
        """Per pixel, the scales (bit j: ``scales[j]``) at which the frame's polarity is significant."""
        return self.bright_bits if self.polarity >= 0 else self.dark_bits

    @property
    def has_structure(self) -> bool:
        """Whether any pixel, of either polarity, is significant: the frame is not noise alone."""
        return bool(max(float(self.bright.max()), float(self.dark.max())) >= self.threshold)


def detection_scales(shape: tuple[int, int]) -> tuple[float, ...]:
    """DoG centre scales 1, 2, 4, … px up to :data:`MAX_SCALE_FRACTION` of the shorter side."""
    top = max(1.0, MAX_SCALE_FRACTION * min(shape))
    # At most 16 scales (one bit each in a 16-bit map); 2^15 px is beyond any frame.
    return tuple(float(2**j) for j in range(min(16, int(math.floor(math.log2(top))) + 1)))


def threshold_for(n_tests: int, false_detections: float) -> float:
    """``k`` with ``n_tests · P(N(0,1) > k) = false_detections`` (Bonferroni over the tests)."""
    return float(-special.ndtri(false_detections / max(n_tests, 1)))  # scipy.stats.norm.isf, as scipy computes it


def _block_mean(image: np.ndarray, f: int) -> np.ndarray:
    h, w = image.shape[0] // f, image.shape[1] // f
    return image[: h * f, : w * f].reshape(h, f, w, f).mean(axis=(1, 3))


def _into_blocks(ufunc: np.ufunc, full: np.ndarray, small: np.ndarray, f: int) -> None:
    """``full = ufunc(full, expanded small)`` in place, ``small`` expanded as nearest-neighbour
    blocks of ``f × f`` (the rows and columns past the last whole block take its edge values).

    The same values as expanding ``small`` to a full-size array first, without it: each block
    of ``full`` is a strided view against which ``small`` broadcasts.
    """
    h, w = small.shape
    hf, wf = h * f, w * f
    body = full[:hf, :wf].view()
    body.shape = (h, f, w, f)  # a view (raises rather than copies)
    ufunc(body, small[:, None, :, None], out=body)
    if full.shape[0] > hf:
        rows = full[hf:, :wf].view()
        rows.shape = (full.shape[0] - hf, w, f)
        ufunc(rows, small[-1][None, :, None], out=rows)
    if full.shape[1] > wf:
        cols = full[:hf, wf:].view()
        cols.shape = (h, f, full.shape[1] - wf)
        ufunc(cols, small[:, -1][:, None, None], out=cols)
        if full.shape[0] > hf:
            ufunc(full[hf:, wf:], small[-1, -1], out=full[hf:, wf:])


def _combine_coarse(coarse: list[tuple[int, list[np.ndarray]]]) -> tuple[int, list[np.ndarray]] | None:
    """The block-mean scales' maps (response and hit bits per polarity, factors 2, 4, 8, …)
    combined into those of the finest factor: each coarser grid's maps taken into the next finer
    one's by :func:`_into_blocks` (maximum, bitwise or) at factor 2, in place. None without any."""
    acc = None
    for f, maps in sorted(coarse, key=lambda item: -item[0]):
        if acc is not None:
            if acc[0] != 2 * f:
                raise ValueError(f"block-mean factors must double from scale to scale, got {f} then {acc[0]}")
            for ufunc, target, source in zip((np.maximum, np.bitwise_or) * 2, maps, acc[1]):
                _into_blocks(ufunc, target, source, 2)
        acc = (f, maps)
    return acc


def _subsample_blocks(small: np.ndarray, f: int, shape: tuple[int, int], step: int) -> np.ndarray:
    """``expanded[::step, ::step]`` of ``small`` expanded to ``shape`` as in :func:`_into_blocks`,
    gathered from ``small`` directly."""
    rows = np.minimum(np.arange(0, shape[0], step) // f, small.shape[0] - 1)
    cols = np.minimum(np.arange(0, shape[1], step) // f, small.shape[1] - 1)
    return small[rows][:, cols]


@lru_cache(maxsize=64)
def _dog_norm_1d(n: int, s: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per position of an axis of ``n`` pixels: ``⟨g_a, g_a⟩, ⟨g_b, g_b⟩, ⟨g_a, g_b⟩`` of the rows of
    the reflecting 1-D Gaussian filter matrices of sigmas ``s`` and ``SURROUND·s``."""
    # Column j is the filters' response to a unit impulse at j. Farther than the surround's
    # kernel radius from both ends, that response is the kernel itself (every product but one is
    # w·0, added exactly), so all interior columns are equal: only the border columns and one
    # interior column are filtered (about 30 columns instead of n; the first analysis of a frame
    # size paid ~0.1 s CPU for the full matrices). Columns are filtered independently and summed
    # in row order (numpy reduces axis 0 of a C-ordered array row by row; cumsum does the same),
    # so the values are those of the full matrices to the bit (tests/test_primitives.py).
    border = int(4.0 * SURROUND * s + 0.5) + 1  # scipy's kernel radius (truncate 4) and one more
    if n > 2 * border + 1:
        cols = np.concatenate([np.arange(border + 1), np.arange(n - border, n)])
    else:
        cols = np.arange(n)
    impulses = np.zeros((n, cols.size), dtype=np.float64)
    impulses[cols, np.arange(cols.size)] = 1.0
    ga = ndimage.gaussian_filter1d(impulses, s, axis=0, mode="reflect")
    gb = ndimage.gaussian_filter1d(impulses, SURROUND * s, axis=0, mode="reflect")
    sums = [np.cumsum(x, axis=0)[-1] for x in (ga * ga, gb * gb, ga * gb)]
    if cols.size == n:
        return tuple(sums)
    # Column ``border`` is interior: it stands for every column up to n − border.
    full = [np.concatenate([v[:border], np.full(n - 2 * border, v[border]), v[border + 1 :]]) for v in sums]
    return tuple(full)


@lru_cache(maxsize=32)
def _dog_null_sd(shape: tuple[int, int], s: float) -> np.ndarray:
    """sd of the DoG response (centre ``s``, surround ``SURROUND·s``, reflecting borders) to unit
    white noise, per pixel: ``‖row i of the filter matrix‖₂``.

    Near a border the reflected kernel overlaps itself and the response to noise grows (up to
    twice in a corner): a threshold for the interior would be crossed there by noise alone.
    Each Gaussian is separable, so the squared norm is a sum of outer products of 1-D terms
    ``⟨g_a, g_b⟩`` per position, from the 1-D filter matrices.

    The map depends on the frame's shape and the scale only, so it is cached (read-only): a lot of
    same-sized frames, and the second test of one frame, reuse it.
    """
    (raa, rbb, rab), (caa, cbb, cab) = (_dog_norm_1d(n, s) for n in shape)
    var = np.outer(raa, caa) + np.outer(rbb, cbb) - 2.0 * np.outer(rab, cab)
    sd = np.sqrt(np.maximum(var, 1e-30)).astype(np.float32)
    sd.flags.writeable = False
    return sd


def _dog_skew_factor(s: float) -> float:
    """``Σw³ / (Σw²)^{3/2}`` of the unit-integral DoG of centre scale ``s`` (∝ 1/s; computed at s = 1)."""
    half = int(math.ceil(4 * SURROUND))
    yy, xx = np.mgrid[-half : half + 1, -half : half + 1]
    r2 = (yy * yy + xx * xx).astype(float)
    w = np.exp(-r2 / 2) / (2 * math.pi) - np.exp(-r2 / (2 * SURROUND**2)) / (2 * math.pi * SURROUND**2)
    return float((w**3).sum() / (w**2).sum() ** 1.5) / s


#: Above this many electrons the skewness of the stabilised count is its asymptote
#: ``−1/(2·sqrt(λ))`` (delta method: the Poisson skew ``1/sqrt(λ)`` less ``3/(2·sqrt(λ))`` from
#: the square root's curvature); at 10⁴ the pmf sum gives −0.0050002, the asymptote −0.005.
_SKEW_ASYMPTOTE_ELECTRONS = 1e4


def _stabilized_poisson_skew(lam: float) -> float:
    """Skewness of Anscombe's ``2·sqrt(n + 3/8)`` for ``n ~ Poisson(lam)``, summed over the pmf
    (its asymptote above :data:`_SKEW_ASYMPTOTE_ELECTRONS`, so the sum stays bounded)."""
    if lam > _SKEW_ASYMPTOTE_ELECTRONS:
        return -0.5 / math.sqrt(lam)
    n = np.arange(0, int(math.ceil(lam + 12 * math.sqrt(lam) + 20)))
    p = np.exp(special.xlogy(n, lam) - special.gammaln(n + 1) - lam)  # scipy.stats.poisson.pmf, as scipy computes it
    f = 2.0 * np.sqrt(n + 0.375)
    mean = float((p * f).sum())
    var = float((p * (f - mean) ** 2).sum())
    return float((p * (f - mean) ** 3).sum()) / var**1.5 if var > 0 else 0.0


def _electrons(z_value: float, model: NoiseModel) -> float | None:
    """Electrons per pixel at stabilised value ``z_value`` (the inverse transform), at least 0.1;
    None without a Poisson part."""
    a = model.gain
    if a <= 0:
        return None
    return max(0.1, z_value * z_value / 4.0 - 0.375 - model.read_variance / (a * a))


@dataclass(frozen=True)
class DogResponses:
    """A stabilised frame's DoG responses at every detection scale, before any noise model.

    ``dogs[j]`` is the DoG of centre scale ``scales[j]`` on the block-mean grid of factor
    ``factors[j]`` (1: the frame itself). They depend on the frame only, so a second test of the
    same frame (with the noise's sum inflation measured from the first) reuses them.
    ``levels``: the 10th, 50th and 90th percentiles of the frame's 4 × 4 block means.
    """

    shape: tuple[int, int]
    scales: tuple[float, ...]
    factors: tuple[int, ...]
    dogs: tuple[np.ndarray, ...]
    levels: np.ndarray


def dog_responses(z: np.ndarray) -> DogResponses:
    """The DoG responses of a stabilised frame at its detection scales (see :func:`significance`)."""
    z = np.asarray(z, dtype=np.float32)
    scales = detection_scales(z.shape)
    grids: dict[int, np.ndarray] = {1: z}
    factors, dogs = [], []
    for s in scales:
        # Scales above 2 px run on a block-mean grid (2 px per block at the centre scale): the
        # response is smooth there, and the cost stays that of the finest scale.
        f = max(1, int(s // 2))
        if f not in grids:
            grids[f] = _block_mean(z, f)
        grid = grids[f]
        sg = s / f
        factors.append(f)
        dogs.append(ndimage.gaussian_filter(grid, sg, mode="reflect") - ndimage.gaussian_filter(grid, SURROUND * sg, mode="reflect"))
    # (Local signal levels from 4 × 4 block means, the grid of scale 8 where the frame has one.)
    small = (grids[4] if 4 in grids else _block_mean(z, 4)) if min(z.shape) >= 8 else z
    levels = np.quantile(small, [0.1, 0.5, 0.9])
    return DogResponses(shape=z.shape, scales=scales, factors=tuple(factors), dogs=tuple(dogs), levels=levels)


def significance(z: np.ndarray, model: NoiseModel, false_detections: float = 0.05) -> Significance:
    """Scale-space significance of bright and dark blobs in a stabilised frame.

    Parameters
    ----------
    z : numpy.ndarray
        The frame after :func:`semqa.particles.noise.stabilize`.
    model : NoiseModel
        Its noise model (``stabilized_sd × sum_inflation`` is the null sd of region sums).
    false_detections : float
        Expected number of significant pixels in a frame of noise alone (the budget ε).

    Returns
    -------
    Significance
        Response maps, threshold and polarity.
    """
    return significance_from(dog_responses(z), model, false_detections)


def significance_from(responses: DogResponses, model: NoiseModel, false_detections: float = 0.05) -> Significance:
    """:func:`significance` of a frame from its :func:`dog_responses` (computed once per frame)."""
    shape, scales = responses.shape, responses.scales
    size = shape[0] * shape[1]
    sd_sum = model.stabilized_sd * model.sum_inflation
    # Both polarities are tested at every pixel and scale.
    k = threshold_for(2 * size * len(scales), false_detections)
    # Few electrons per pixel leave Poisson skew in the sums (the transform removes most of
    # it, not all): the bright tail of the null is heavier than a normal one. The
    # Cornish–Fisher expansion (Cornish & Fisher, Rev. Inst. Int. Stat. 5, 1937) raises each
    # scale's bright threshold to k + γ(k² − 1)/6, with γ the skewness of the filtered noise
    # at the frame's lowest signal λ (the 10th percentile of local means, in electrons): for independent
    # pixels the third cumulant of Σ w·x is Σ w³ κ₃(x), so γ = γ_x Σw³ / (Σw²)^{3/2}, with γ_x
    # the skewness of one stabilised Poisson(λ) pixel. That skew is positive below ~2 electrons
    # and slightly negative above: the dark threshold is raised by the most negative skew at
    # the frame's 10th, 50th and 90th percentile signals.
    # (Local signal levels from 4 × 4 block means: a single pixel's count is not its λ.)
    electrons = [e for e in (_electrons(float(q), model) for q in responses.levels) if e is not None]
    skews = [_stabilized_poisson_skew(e) for e in electrons] or [0.0]
    bright_skew, dark_skew = max(0.0, skews[0]), max(0.0, -min(skews))
    bright = np.full(shape, -np.inf, dtype=np.float32)
    dark = np.full(shape, -np.inf, dtype=np.float32)
    bright_bits = np.zeros(shape, dtype=np.uint16)
    dark_bits = np.zeros(shape, dtype=np.uint16)
    tilts = []
    coarse: list[tuple[int, list[np.ndarray]]] = []  # per block-mean scale: its factor and four maps
    for j, (s, f, dog) in enumerate(zip(scales, responses.factors, responses.dogs)):
        sg = s / f
        # Block means of f² pixels have null sd sd_sum / f (sums keep sd_sum · sqrt(N)).
        response = dog / (_dog_null_sd(dog.shape, sg) * np.float32(sd_sum / f))
        # Responses in units of this scale's threshold, times k: one threshold k for all.
        cf = _dog_skew_factor(s) * (k * k - 1) / 6
        bit = np.uint16(1 << j)
        maps = []
        for best, bits, r in (
            (bright, bright_bits, response * np.float32(k / (k + bright_skew * cf))),
            (dark, dark_bits, -response * np.float32(k / (k + dark_skew * cf))),
        ):
            hit = np.where(r >= k, bit, np.uint16(0))
            if f > 1:
                maps += [r, hit]
            else:
                np.maximum(best, r, out=best)
                bits |= hit
        if f > 1:
            coarse.append((f, maps))
        # Polarity evidence of this scale: the extremes of the response on a 4 × 4 subsample.
        # Blobs of the minority phase give a long tail on their side; a step edge responds
        # symmetrically and a blob's surround lobe is weaker than its centre.
        sample = _subsample_blocks(response, f, shape, 4) if f > 1 else response[::4, ::4]
        lo, hi = np.quantile(sample, [0.005, 0.995])
        tilts.append(float(hi + lo))
    # The coarse scales' maps are combined block-wise into the full-size ones (no expansion),
    # coarsest first: each into the next finer grid (factor 2), the finest into the frame, so
    # the full-size arrays are passed twice rather than twice per scale. Maximum and bitwise or
    # are exact in any order, and a pixel's block at factor 2f is that of its block at factor f
    # (the edge rows and columns included), so the maps are those of combining each scale alone.
    finest = _combine_coarse(coarse)
    if finest is not None:
        f, (r_bright, hit_bright, r_dark, hit_dark) = finest
        _into_blocks(np.maximum, bright, r_bright, f)
        _into_blocks(np.bitwise_or, bright_bits, hit_bright, f)
        _into_blocks(np.maximum, dark, r_dark, f)
        _into_blocks(np.bitwise_or, dark_bits, hit_dark, f)
    tilt = 0.0
    for term, s in zip(tilts, scales):  # in the order of the scales (not sum(): Python 3.12's compensates rounding)
        tilt += term / s
    top_bright, top_dark = float(bright.max()), float(dark.max())
    polarity = (1 if tilt >= 0 else -1) if max(top_bright, top_dark) >= k else 0
    return Significance(
        bright=bright, dark=dark, bright_bits=bright_bits, dark_bits=dark_bits, threshold=k, polarity=polarity, scales=scales
    )


def _robust_correlation(u: np.ndarray, v: np.ndarray) -> float:
    """Correlation of two series of equal scale from robust sds of their sum and difference,
    ``(s²(u+v) − s²(u−v)) / (s²(u+v) + s²(u−v))`` (Gnanadesikan & Kettenring, *Biometrics* 28,
    1972): the residual's large values at particle edges barely move the medians."""
    plus, minus = robust_sd(u + v) ** 2, robust_sd(u - v) ** 2
    return (plus - minus) / (plus + minus) if plus + minus > 0 else 0.0


def _residual_correlations(e: np.ndarray, calm: np.ndarray) -> np.ndarray:
    """Lag-1 correlations of a residual field along x and y, over pairs of calm pixels."""
    out = []
    for a, b, ca, cb in ((e[:, 1:], e[:, :-1], calm[:, 1:], calm[:, :-1]), (e[1:], e[:-1], calm[1:], calm[:-1])):
        both = ca & cb
        out.append(_robust_correlation(a[both], b[both]) if np.count_nonzero(both) >= 64 else np.nan)
    return np.array(out)


@lru_cache(maxsize=1)
def _gradient_null_sd() -> float:
    """sd of each component of the Gaussian gradient (sigma 1 px) of unit white noise: the
    derivative kernel's L2 norm."""
    delta = np.zeros((41, 41))
    delta[20, 20] = 1.0
    return float(np.sqrt((ndimage.gaussian_filter(delta, 1.0, order=(0, 1)) ** 2).sum()))


#: Share of white-noise pixels a calm pixel's gradient test rejects: the magnitude of a
#: gradient of two independent normal components of sd s is Rayleigh, P(|∇| > s·sqrt(−2 ln p)) = p.
_CALM_TAIL = 0.01


def residual_correlation(z: np.ndarray, pixel_sd: float, max_side: int = 512) -> tuple[np.ndarray, np.ndarray] | None:
    """Lag-1 correlations (x, y) of the Immerkær residual of a stabilised frame, and their sds.

    The Immerkær residual (:mod:`semqa.particles.noise`) cancels structure up to second order, so
    its lag-1 correlation along each axis is that of the noise seen through the operator:
    :data:`WHITE_RESIDUAL_CORRELATION` for white noise, higher for noise smoothed between
    neighbours. It needs no substrate free of particles: only pairs of calm pixels count (the
    Gaussian gradient at 1 px within the 99 % Rayleigh range of the noise's, :data:`_CALM_TAIL`),
    which keeps the edges of dense, bright small particles out; the robust correlation
    (:func:`_robust_correlation`) ignores the rest. The estimates are batch means over
    :data:`_WHITENESS_STRIPS` strips of rows (fewer, of 4 rows, in a small frame), their sds
    from the strips' spread. A central crop of at most ``max_side²`` pixels is used (at 512², an
    sd of about 0.0025 on white noise). None where the frame is too small (under 8 strips) or
    too few calm pairs (64 per strip) remain to tell.
    """
    r0, c0 = max(0, (z.shape[0] - max_side) // 2), max(0, (z.shape[1] - max_side) // 2)
    crop = np.asarray(z[r0 : r0 + max_side, c0 : c0 + max_side], dtype=np.float32)
    e = immerkaer_residual(crop)
    n_strips = min(_WHITENESS_STRIPS, e.shape[0] // 4)
    if n_strips < 8 or e.shape[1] < 4:
        return None
    grad = ndimage.gaussian_gradient_magnitude(crop, 1.0)[1:-1, 1:-1]
    calm = grad <= _gradient_null_sd() * pixel_sd * math.sqrt(-2.0 * math.log(_CALM_TAIL))
    strips = np.array([
        _residual_correlations(part, ok)
        for part, ok in zip(np.array_split(e, n_strips, axis=0), np.array_split(calm, n_strips, axis=0))
    ])
    if not np.all(np.isfinite(strips)):
        return None
    return strips.mean(axis=0), strips.std(axis=0, ddof=1) / math.sqrt(n_strips)


def noise_is_white(measured: tuple[np.ndarray, np.ndarray] | None) -> bool:
    """Whether residual correlations (:func:`residual_correlation`) are those of white noise.

    The shot noise of a raw scan is white: each pixel's count is independent, and the probe
    blurs the signal before the electrons are counted. Noise is correlated only where the frame
    was filtered after detection (detector bandwidth, interpolation, super-resolution), which
    raises the residual's correlation. The test is one-sided at :data:`WHITENESS_Z` sds on
    both axes; without a measurement, False (the conservative substrate estimate).
    """
    if measured is None:
        return False
    rho, sd = measured
    return bool(np.all(rho - WHITE_RESIDUAL_CORRELATION <= WHITENESS_Z * sd))


def null_sum_inflation(z: np.ndarray, model: NoiseModel, white_test: Significance, rounds: int = 4) -> float:
    """The inflation of the null sd of sums (``NoiseModel.sum_inflation``) the final test uses.

    White noise (:func:`noise_is_white`) has none: 1. Correlated noise is measured as block-mean
    differences (:func:`semqa.particles.noise.sum_inflation`) on the substrate, away from the
    structure significant under the inflation so far, from the whole frame's estimate down
    (``model.sum_inflation`` from :func:`semqa.particles.noise.fit_noise_model`: structure only
    adds to block differences, so it is an upper bound). The structure is read off the first
    test under white noise (``white_test``): its responses scale as one over the null sd. A
    substrate taken as the pixels insignificant under white noise would drop the noise's own
    highs and bias the estimate low; starting from the bound, each round drops only what is
    significant under the last estimate. Where too little substrate remains, the last estimate
    stands (never the white-noise 1).
    """
    if noise_is_white(residual_correlation(z, model.stabilized_sd)):
        return 1.0
    response = np.maximum(white_test.bright, white_test.dark)
    inflation = model.sum_inflation
    for _ in range(rounds):
        substrate = ~max_filter_square(response >= inflation * white_test.threshold, 9)
        update = sum_inflation(z, model.stabilized_sd, substrate, fallback=inflation)
        if update >= inflation:
            break
        inflation = update
    return inflation
