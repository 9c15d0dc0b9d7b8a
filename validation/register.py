"""HR↔LR registration: measure how well a pair agrees, and crop it to its aligned overlap.

The HR image is brought onto the LR grid by the mean over ``scale × scale`` blocks
(:func:`skimage.transform.downscale_local_mean`), the area integration an SEM pixel does
(see :mod:`semqa.sr.degradation`), so an aligned pair differs only by noise and blur. The
residual shift comes from phase correlation with sub-pixel refinement by an upsampled
DFT (Guizar-Sicairos, Thurman & Fienup, "Efficient subpixel image registration
algorithms", Opt. Lett. 33, 156 (2008); :func:`skimage.registration.phase_cross_correlation`).

Shift convention (scikit-image's): ``shift`` moves the LR onto the downscaled HR, i.e.
LR pixel ``u`` shows what the downscaled HR shows at ``u + shift``.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage
from skimage.registration import phase_cross_correlation
from skimage.transform import downscale_local_mean

from semqa.errors import InputError


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
    shift, _, _ = phase_cross_correlation(hr_down, lr_c, upsample_factor=upsample_factor)
    return np.asarray(shift, dtype=float)


def alignment(hr: np.ndarray, lr: np.ndarray, scale: int, upsample_factor: int = 20) -> tuple[np.ndarray, float]:
    """Residual shift (LR px) and the correlation the pair reaches once that shift is removed.

    The correlation is Pearson's r between the downscaled HR and the shifted LR (bilinear)
    on their common interior. Removing the shift first keeps the two measures apart: a
    misaligned pair has a large shift but a high correlation, a wrong or corrupted
    partner a low correlation. An image without variation correlates with nothing: 0.
    """
    hr_down, lr_c = downscale_to_lr(hr, lr, scale)
    shift, _, _ = phase_cross_correlation(hr_down, lr_c, upsample_factor=upsample_factor)
    moved = ndimage.shift(lr_c, shift, order=1, mode="nearest")
    m = int(math.ceil(float(np.abs(shift).max()))) + 1
    a, b = hr_down[m:-m, m:-m], moved[m:-m, m:-m]
    if a.size < 4 or a.std() == 0 or b.std() == 0:
        return np.asarray(shift, dtype=float), 0.0
    return np.asarray(shift, dtype=float), float(np.corrcoef(a.ravel(), b.ravel())[0, 1])


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
