"""HR↔LR registration: measure how well a pair agrees, and crop it to its aligned overlap.

The HR image is brought onto the LR grid by the mean over ``scale × scale`` blocks
(:func:`skimage.transform.downscale_local_mean`), the area integration an SEM pixel does
(see :mod:`semqa.sr.degradation`), so an aligned pair differs only by noise and blur. The
residual shift comes from the peak of the cross-correlation with sub-pixel refinement by an
upsampled DFT (Guizar-Sicairos, Thurman & Fienup, "Efficient subpixel image registration
algorithms", Opt. Lett. 33, 156 (2008); :func:`skimage.registration.phase_cross_correlation`
with :data:`NORMALIZATION`).

Shift convention (scikit-image's): ``shift`` moves the LR onto the downscaled HR, i.e.
LR pixel ``u`` shows what the downscaled HR shows at ``u + shift``.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
from scipy import ndimage
from skimage.registration import phase_cross_correlation
from skimage.transform import downscale_local_mean

from semqa.errors import InputError
from validation.measures import noise_sd


#: Cross-correlation without phase normalisation: for white (shot) noise the maximum-likelihood
#: translation is the peak of the plain cross-correlation, while phase normalisation weights
#: every frequency alike, the noise-only high ones included (Robinson & Milanfar, "Fundamental
#: performance limits in image registration", IEEE Trans. Image Process. 13(9), 2004). On clean
#: 256² pairs (semqa.synth.scenes) at 10 e⁻/px the residual shift of 12 pairs is 0.00–0.15 LR px
#: this way and 0.05–0.36 with phase normalisation, against the 0.25 limit.
NORMALIZATION: str | None = None


def downscale_to_lr(hr: np.ndarray, lr: np.ndarray, scale: int) -> tuple[np.ndarray, np.ndarray]:
    """The HR area-averaged onto the LR grid, and the LR, cropped to their common extent.

    LR pixel ``(i, j)`` is compared with HR pixels ``[i·s, (i+1)·s) × [j·s, (j+1)·s)``.
    """
    h = min(lr.shape[0], hr.shape[0] // scale)
    w = min(lr.shape[1], hr.shape[1] // scale)
    if h < 2 or w < 2:
        raise InputError(f"HR {hr.shape[1]}×{hr.shape[0]} and LR {lr.shape[1]}×{lr.shape[0]} share no area at scale {scale}")
    hr_down = downscale_local_mean(np.asarray(hr[: h * scale, : w * scale], dtype=np.float64), (scale, scale))
    return hr_down, np.asarray(lr[:h, :w], dtype=np.float64)


def estimate_shift(hr: np.ndarray, lr: np.ndarray, scale: int, upsample_factor: int = 20) -> np.ndarray:
    """Shift ``(dy, dx)`` in LR pixels that registers the LR with the downscaled HR."""
    hr_down, lr_c = downscale_to_lr(hr, lr, scale)
    shift, _, _ = phase_cross_correlation(hr_down, lr_c, upsample_factor=upsample_factor, normalization=NORMALIZATION)
    return np.asarray(shift, dtype=float)


#: Least share of the LR frame the aligned pair must have in common for its correlation to
#: say anything: below half, the two images show mostly different ground, and a peak of the
#: phase correlation over the remaining strip is as likely chance as a match.
MIN_OVERLAP: float = 0.5


class Alignment(NamedTuple):
    """How well an HR/LR pair agrees once its residual shift is removed."""

    shift: np.ndarray
    """``(dy, dx)`` in LR pixels (scikit-image's convention, see the module docstring)."""
    correlation: float
    """Pearson's r of the downscaled HR and the shifted LR on their common interior."""
    correlation_max: float
    """The r that two noise-free copies of one field would reach through each image's own
    noise: ``sqrt(rel_hr · rel_lr)``, ``rel = S / (S + N)`` (see :func:`registration_quality`)."""
    correlation_ratio: float
    """``correlation / correlation_max``: Spearman's correction for attenuation, the
    correlation of the two images' signals with the noise taken out (0 where either image
    holds no signal above its noise, or the aligned pair overlaps by less than
    :data:`MIN_OVERLAP` of the frame)."""


def _reliability(values: np.ndarray, noise_var: float) -> float:
    """Share of an image's variance that is signal: ``S / (S + N)`` with ``S = var − N``, ≥ 0."""
    total = float(values.var())
    return max(0.0, 1.0 - noise_var / total) if total > 0 else 0.0


def alignment(hr: np.ndarray, lr: np.ndarray, scale: int, upsample_factor: int = 20) -> tuple[np.ndarray, float]:
    """Residual shift (LR px) and the correlation the pair reaches once that shift is removed.

    The correlation is Pearson's r between the downscaled HR and the shifted LR (bilinear)
    on their common interior. Removing the shift first keeps the two measures apart: a
    misaligned pair has a large shift but a high correlation, a wrong or corrupted
    partner a low correlation. An image without variation correlates with nothing: 0.
    :func:`registration_quality` adds what the noise allows.
    """
    quality = registration_quality(hr, lr, scale, upsample_factor)
    return quality.shift, quality.correlation


def registration_quality(hr: np.ndarray, lr: np.ndarray, scale: int, upsample_factor: int = 20) -> Alignment:
    """Shift and correlation of a pair (:func:`alignment`), judged against its noise.

    Shot noise caps the r of a perfectly registered pair: with signal variance ``S`` and
    white-noise variance ``N`` in each image, ``r ≤ sqrt(rel_hr · rel_lr)`` with the
    reliability ``rel = S / (S + N)`` (C. Spearman, "The proof and measurement of
    association between two things", Am. J. Psychol. 15, 72–101, 1904). A fast scan at
    40 e⁻/px has ``rel`` well below 1, so r alone falls with the dose; ``correlation_ratio``
    divides that cap out. ``N`` comes from each image itself (:func:`validation.measures.noise_sd`):
    for the LR, times the noise gain of the bilinear shift, ``Π((1 − f)² + f²)`` over the
    fractional shifts ``f``; for the downscaled HR, the HR's noise variance over the
    ``scale²`` pixels each block mean averages (shot noise is independent pixel to pixel).
    """
    hr_down, lr_c = downscale_to_lr(hr, lr, scale)
    shift, _, _ = phase_cross_correlation(hr_down, lr_c, upsample_factor=upsample_factor, normalization=NORMALIZATION)
    shift = np.asarray(shift, dtype=float)
    moved = ndimage.shift(lr_c, shift, order=1, mode="nearest")
    # Where the shifted LR holds its own pixels (not the edge repeated), one pixel inside.
    window = tuple(
        slice(max(0, math.ceil(d)) + 1, min(n, math.floor(n - 1 + d)) - 1) for d, n in zip(shift, lr_c.shape, strict=True)
    )
    a, b = hr_down[window], moved[window]
    corr = float(np.corrcoef(a.ravel(), b.ravel())[0, 1]) if a.size >= 4 and a.std() > 0 and b.std() > 0 else 0.0
    if a.size < MIN_OVERLAP * lr_c.size or corr == 0.0:
        return Alignment(shift, corr, 0.0, 0.0)
    frac = np.abs(shift - np.round(shift))
    interp_gain = float(np.prod((1 - frac) ** 2 + frac**2))
    n_lr = noise_sd(lr_c) ** 2 * interp_gain
    n_hr = noise_sd(np.asarray(hr, dtype=np.float64)) ** 2 / scale**2
    cap = math.sqrt(_reliability(a, n_hr) * _reliability(b, n_lr))
    return Alignment(shift, corr, cap, corr / cap if cap > 0 else 0.0)


def _overlap(shift_hr: int, n_hr: int, n_lr: int, scale: int) -> tuple[int, int, int]:
    """(LR start, HR start, LR length) along one axis for an HR offset ``shift_hr``."""
    u0 = max(0, -(shift_hr // scale))  # smallest u with u·scale + shift_hr ≥ 0
    h0 = u0 * scale + shift_hr
    n = min(n_lr - u0, (n_hr - h0) // scale)
    return u0, h0, n


def register_pair(
    hr: np.ndarray, lr: np.ndarray, scale: int, *, upsample_factor: int = 20
) -> tuple[np.ndarray, np.ndarray, tuple[float, float]]:
    """Register an HR/LR pair and crop both to their aligned overlap.

    The shift is measured by :func:`estimate_shift` and applied as a whole number of HR
    pixels (LR pixel ``u`` of the crop covers HR pixels ``[u·s, (u+1)·s)`` of the HR crop),
    so nothing is resampled and the residual misalignment is at most half an HR pixel
    (``0.5 / scale`` LR pixel).

    Parameters
    ----------
    hr, lr : numpy.ndarray
        2-D images; the HR side should be about ``scale`` × the LR side.
    scale : int
        HR pixels per LR pixel.

    Returns
    -------
    hr_cropped, lr_cropped : numpy.ndarray
        The aligned overlap; ``hr_cropped.shape == scale × lr_cropped.shape``.
    shift : tuple of float
        The measured ``(dy, dx)`` in LR pixels.

    Raises
    ------
    InputError
        When the pair has no overlap left after registration.
    """
    shift = estimate_shift(hr, lr, scale, upsample_factor)
    shift_hr = [int(round(float(s) * scale)) for s in shift]
    (u0, h0, nh) = _overlap(shift_hr[0], hr.shape[0], lr.shape[0], scale)
    (v0, w0, nw) = _overlap(shift_hr[1], hr.shape[1], lr.shape[1], scale)
    if nh < 2 or nw < 2:
        raise InputError(f"pair shifted by ({shift[0]:.2f}, {shift[1]:.2f}) LR px has no overlap left")
    lr_c = lr[u0 : u0 + nh, v0 : v0 + nw]
    hr_c = hr[h0 : h0 + nh * scale, w0 : w0 + nw * scale]
    return hr_c, lr_c, (float(shift[0]), float(shift[1]))
