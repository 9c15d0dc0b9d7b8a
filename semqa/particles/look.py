"""A first look at a frame whose particle size is not yet known: where its particles are.

The learned segmenter resamples every frame by the typical particle diameter
(:func:`semqa.particles.segmentation.estimate_particle_diameter`), so that estimate must hold
before anything about the frame is known: neither the particles' polarity nor the particle
size that the classic pipeline's background and denoising are scaled by. A plain Otsu
threshold of the raw frame fails on three things real and synthetic frames share, each
measured on the segmenter's training mix (``benchmarks/bench_size_estimate.py``):

* **dark particles** (a bright stub, BSE of a light matrix): Otsu's upper class is the
  substrate, one component spanning the frame, read as a particle 5–30× too large;
* **uneven illumination** (SE detector geometry, charging): the threshold splits the frame
  along the gradient rather than around the particles;
* **shot noise** at a fast scan's dose: the mask breaks into specks.

:func:`particle_mask` answers each without a size:

1. **Denoise** only as much as the noise demands: the noise sd of the 2 × 2 block mean is read
   from its horizontal first differences (MAD, robust to edges), the contrast as the gap
   between the two Otsu classes' means, and a Gaussian of sigma ``contrast_to_noise · s /
   (2 √π c)`` brings the noise to ``1/contrast_to_noise`` of the contrast (white noise of sd
   ``s`` keeps ``s / (2 √π σ)``; the classic pipeline's rule and its
   :attr:`~semqa.particles.segmentation.SegmentationConfig.contrast_to_noise`), capped at
   :data:`MAX_SIGMA_PX` so that touching particles' gaps are not closed. No more: smoothing
   merges neighbours and inflates the clusters' thickness.
2. **Flatten** by a second-degree polynomial surface (vignetting and detector gradients are
   smooth across the whole field, so the surface needs no particle scale), fitted by least
   squares to the logarithm of the substrate pixels and divided out (SE yield and
   illumination multiply; the exponential of the fit is positive everywhere, where a fit of
   the counts themselves went negative in a corner beside a large cluster and the mask
   emptied); the substrate is first the whole frame, then the side of the Otsu threshold
   chosen in step 3.
3. **Choose the phase**: of Otsu's two classes the substrate is the one whose largest
   connected part holds the larger share of it — the substrate surrounds the particles and is
   one connected region, the particles are many components (also when the particles are dark
   and whatever share of the field they cover).

The mask then goes to :func:`semqa.particles.scale.particle_scale`.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

from semqa.particles.primitives import block_mean, otsu_mask

#: Largest denoising sigma on the 2 × 2 block grid (4 px of the frame): beyond it the gaps
#: between touching particles of the learned segmenter's smallest working size close.
MAX_SIGMA_PX = 2.0
#: Flattening passes: the whole frame, then the substrate of the first pass's mask.
FLATTEN_PASSES = 2
#: The polynomial surface's degree: a plane and the field's curvature (vignetting).
SURFACE_DEGREE = 2


def denoise_sigma(image: np.ndarray, contrast_to_noise: float) -> float:
    """Gaussian sigma (px) after which the noise sd is ``1 / contrast_to_noise`` of the two
    Otsu classes' contrast, at most :data:`MAX_SIGMA_PX`; 0 when the noise already allows it."""
    d = np.diff(image, axis=1)
    sd = 1.4826 * float(np.median(np.abs(d - np.median(d)))) / math.sqrt(2.0)
    upper = otsu_mask(ndimage.gaussian_filter(image, 1.0))
    if upper is None or upper.all() or not upper.any():
        return 0.0
    contrast = abs(float(image[upper].mean() - image[~upper].mean()))
    sigma = MAX_SIGMA_PX if contrast <= 0 else min(MAX_SIGMA_PX, contrast_to_noise * sd / (2.0 * math.sqrt(math.pi) * contrast))
    return sigma if sigma >= 0.5 else 0.0  # below half a pixel a Gaussian barely changes the frame


def polynomial_surface(image: np.ndarray, where: np.ndarray, degree: int = SURFACE_DEGREE) -> np.ndarray:
    """Least-squares polynomial surface of ``degree`` in x and y fitted to ``image[where]``
    (every other row and column), evaluated everywhere."""
    h, w = image.shape
    y, x = np.ogrid[0:h, 0:w]
    y, x = y / h - 0.5, x / w - 0.5
    terms = [x ** (d - k) * y ** k for d in range(degree + 1) for k in range(d + 1)]
    sub = where[::2, ::2]
    columns = [np.broadcast_to(t, image.shape)[::2, ::2][sub] for t in terms]
    coef, *_ = np.linalg.lstsq(np.stack(columns, axis=1), image[::2, ::2][sub], rcond=None)
    return sum(c * np.broadcast_to(t, image.shape) for c, t in zip(coef, terms))


def particle_phase(upper: np.ndarray) -> np.ndarray:
    """The particles of a two-phase mask: the phase other than the substrate, which is the one
    whose largest connected part holds the larger share of its pixels.

    >>> upper = np.zeros((9, 9), bool); upper[2:4, 2:4] = upper[5:7, 5:7] = True
    >>> bool(particle_phase(upper)[2, 2]), bool(particle_phase(~upper)[2, 2])
    (True, True)
    """
    shares = []
    for phase in (upper, ~upper):
        lab, n = ndimage.label(phase)
        sizes = np.bincount(lab.ravel())[1:] if n else np.zeros(1)
        shares.append(float(sizes.max()) / max(float(sizes.sum()), 1.0))
    return upper if shares[0] <= shares[1] else ~upper


def particle_mask(image: np.ndarray, contrast_to_noise: float) -> tuple[np.ndarray | None, int]:
    """The particles of a frame on its 2 × 2 block grid (module docstring), and that grid's factor.

    Returns ``(None, factor)`` for a flat frame.
    """
    factor = 2 if min(image.shape) >= 64 else 1
    small = block_mean(image.astype(np.float32, copy=False), factor)
    sigma = denoise_sigma(small, contrast_to_noise)
    if sigma > 0:
        small = ndimage.gaussian_filter(small, sigma)
    substrate = np.ones(small.shape, dtype=bool)
    mask = None
    # Counts are divided by the illumination; a frame with negative values (already offset
    # or normalised) has lost its zero, and the surface is subtracted instead.
    divide = float(small.min()) >= 0
    floor = 1e-6 + 1e-3 * abs(float(np.median(small)))
    log_small = np.log(np.maximum(small, floor)) if divide else small
    for _ in range(FLATTEN_PASSES):
        surface = polynomial_surface(log_small, substrate)
        flat = small / np.exp(surface) if divide else small - surface
        upper = otsu_mask(flat)
        if upper is None or upper.all() or not upper.any():
            return mask, factor
        mask = particle_phase(upper)
        substrate = ~mask
    return mask, factor
