"""Particle segmentation of secondary-electron (SE) SEM micrographs.

SE images show particles brighter than a darker substrate, with bright rims (the edge
effect), a smooth uneven background, and Poisson shot noise (Reimer, *Scanning Electron
Microscopy*, 2nd ed., Springer 1998, ch. 4). :func:`segment` works in five steps, each
sized from the typical particle diameter in pixels (given, or estimated from the image),
so one configuration serves high-resolution, low-resolution and super-resolved frames:

1. **Denoise** with a Gaussian whose sigma is a small fraction of the particle diameter
   (a symmetric blur leaves the 50 % point of an edge in place).
2. **Flatten** the background: SE illumination and charging act multiplicatively, so the
   image is divided by a smooth substrate estimate, a normalized convolution (Knutsson &
   Westin, CVPR 1993) of the substrate pixels with a Gaussian several particle diameters
   wide, computed on a downsampled grid.
3. **Detect** particles with Otsu's threshold (Otsu, IEEE SMC 1979) of the flattened image,
   then **locate each boundary** with a local half-maximum rule: each particle gets the
   threshold halfway between its local substrate level (median of a ring around it) and its
   own bright level (a high percentile of its pixels, i.e. the rim), the 50 % edge
   criterion of metrology. A global threshold sits closer to the substrate than to the
   rims and would put every boundary outside the true edge by a fraction of the blur width,
   a bias of several per cent of the ECD of a 30-pixel particle.
4. **Fill holes**: bright rims around a darker interior make particles look like rings.
5. **Split touching particles** with a marker-controlled watershed of the distance
   transform (Beucher & Meyer 1993): markers are h-maxima of the distance map, then
   neighbouring regions are merged again where the cut between them is nearly as long as
   the smaller region is wide (a cut across a particle's body, not through a neck). This
   keeps elongated and faceted particles, whose distance maps have several maxima along
   their ridge, in one piece.
"""

from __future__ import annotations

import math

import numpy as np
from pydantic import BaseModel, ConfigDict, Field
from scipy import ndimage
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from skimage.filters import threshold_otsu
from skimage.morphology import h_maxima
from skimage.segmentation import expand_labels, watershed
from skimage.transform import resize

from semqa.errors import InputError


class SegmentationConfig(BaseModel):
    """Parameters of :func:`segment`; lengths relative to the particle diameter scale with it.

    The defaults are tuned on :mod:`semqa.synth` scenes (HR 0.1 µm/px with D50 = 30 px and their
    4× coarser LR scans) and hold for any resolution where typical particles span ≥ 5 px.
    """

    model_config = ConfigDict(extra="forbid")

    particle_diameter_px: float | None = Field(
        None,
        gt=0,
        description="typical particle ECD in pixels; None estimates it from the image "
        "(area-weighted median ECD of a first Otsu segmentation)",
    )
    denoise_sigma_rel: float = Field(
        0.03, ge=0, description="Gaussian denoising sigma as a fraction of the particle diameter"
    )
    denoise_sigma_min_px: float = Field(0.5, ge=0, description="lower bound of the denoising sigma, px")
    denoise_sigma_max_px: float = Field(2.0, ge=0, description="upper bound of the denoising sigma, px")
    background_sigma_rel: float = Field(
        4.0, gt=0, description="sigma of the background estimate, in particle diameters"
    )
    edge_level: float = Field(
        0.5,
        gt=0,
        lt=1,
        description="where each boundary is placed between the local substrate (0) and the particle's "
        "bright level (1); 0.5 is the half-maximum edge criterion",
    )
    bright_percentile: float = Field(
        90.0, gt=50, le=100, description="percentile of a particle's pixels taken as its bright (rim) level"
    )
    ring_px_rel: float = Field(
        0.25, gt=0, description="width of the ring sampled for the local substrate level, in particle diameters"
    )
    min_snr: float = Field(
        5.0, gt=0, description="least contrast of a particle over its substrate, in noise standard deviations"
    )
    fill_holes: bool = Field(True, description="fill enclosed holes (rims make particles look like rings)")
    min_object_px: int = Field(
        4, ge=1, description="connected components smaller than this many pixels are noise and dropped"
    )
    split_touching: bool = Field(True, description="split touching particles by watershed")
    h_px: float = Field(
        1.0, gt=0, description="h of the h-maxima of the distance map used as watershed markers, px"
    )
    merge_neck_ratio: float = Field(
        0.6,
        gt=0,
        description="regions are merged back when the cut between them is longer than this fraction of "
        "the smaller region's inscribed diameter",
    )


def _check_image(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim != 2:
        raise InputError(f"segment needs a 2-D grayscale image, got an array of shape {image.shape}")
    if image.size == 0 or min(image.shape) < 3:
        raise InputError(f"image of shape {image.shape} is too small to segment (at least 3 × 3 pixels)")
    if not (np.issubdtype(image.dtype, np.floating) or np.issubdtype(image.dtype, np.integer)) or image.dtype == bool:
        raise InputError(f"segment needs a real-valued image, got dtype {image.dtype}")
    image = image.astype(np.float32, copy=False)
    if not np.isfinite(image).all():
        raise InputError("image holds NaN or infinite values")
    return image


def _ecd_scale(mask: np.ndarray) -> float | None:
    """Area-weighted median ECD (px) of the connected components of ``mask``."""
    lab, n = ndimage.label(mask)
    if n == 0:
        return None
    areas = np.bincount(lab.ravel())[1:].astype(float)
    areas = areas[areas >= 4]
    if areas.size == 0:
        return None
    order = np.sort(areas)
    cum = np.cumsum(order)
    median_area = order[np.searchsorted(cum, 0.5 * cum[-1])]
    return math.sqrt(4.0 * median_area / math.pi)


def _background(image: np.ndarray, substrate: np.ndarray, sigma_px: float) -> np.ndarray:
    """Smooth substrate level by normalized convolution, computed on a coarse grid."""
    factor = max(1, int(sigma_px // 4))
    small_shape = (max(1, image.shape[0] // factor), max(1, image.shape[1] // factor))
    img_s = resize(image * substrate, small_shape, order=1, anti_aliasing=True)
    w_s = resize(substrate.astype(np.float32), small_shape, order=1, anti_aliasing=True)
    s = sigma_px / factor
    num = ndimage.gaussian_filter(img_s, s, mode="reflect")
    den = ndimage.gaussian_filter(w_s, s, mode="reflect")
    fallback = float(np.median(image[substrate])) if substrate.any() else float(np.median(image))
    bg_s = np.where(den > 1e-3, num / np.maximum(den, 1e-3), fallback)
    bg = resize(bg_s, image.shape, order=1)
    return np.maximum(bg, 1e-6 + 1e-3 * max(fallback, 0.0)).astype(np.float32)


def _otsu_mask(image: np.ndarray) -> np.ndarray | None:
    if float(image.max()) <= float(image.min()):
        return None
    return image > threshold_otsu(image)


def _noise_sd(image: np.ndarray) -> float:
    """Standard deviation of white noise in ``image`` (Immerkær, CVIU 64(2), 1996).

    The image is filtered with the difference of two Laplacians, which cancels smooth
    structure; the mean absolute response gives the noise sd. Edges add a little.
    """
    kernel = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], dtype=np.float32)
    response = ndimage.convolve(image, kernel, mode="reflect")[1:-1, 1:-1]
    return float(math.sqrt(math.pi / 2.0) * np.abs(response).mean() / 6.0)


def _local_threshold_mask(
    flat: np.ndarray, mask: np.ndarray, gap_px: int, ring_px: float, noise_sd: float, config: SegmentationConfig
) -> np.ndarray:
    """Re-threshold every particle at its own half level between substrate and rim.

    Components whose contrast over their local substrate is below ``min_snr`` noise standard
    deviations are noise, not particles, and are dropped (an image of pure noise gives none).
    """
    lab, n = ndimage.label(mask)
    if n == 0:
        return mask
    index = np.arange(1, n + 1)
    zone = expand_labels(lab, distance=gap_px + ring_px)
    ring = np.where(ndimage.binary_dilation(mask, iterations=gap_px), 0, zone)
    substrate = np.asarray(ndimage.median(flat, ring, index), dtype=float)
    # A component without a ring of its own (crowded) takes the field's substrate level.
    substrate = np.where(np.isfinite(substrate), substrate, float(np.median(flat[zone == 0])) if (zone == 0).any() else 1.0)
    bright = np.asarray(
        ndimage.labeled_comprehension(
            flat, lab, index, lambda v: np.percentile(v, config.bright_percentile), np.float64, np.nan
        )
    )
    median = np.asarray(ndimage.median(flat, lab, index), dtype=float)
    real = (median - substrate) > config.min_snr * noise_sd
    level = np.where(real, substrate + config.edge_level * (bright - substrate), np.inf)
    level_map = np.concatenate([[np.inf], level])[zone]
    return flat > level_map


def _split(mask: np.ndarray, config: SegmentationConfig) -> np.ndarray:
    """Marker-controlled watershed of the distance map, merging cuts through particle bodies."""
    dist = ndimage.distance_transform_edt(mask).astype(np.float32)
    markers, n_markers = ndimage.label(h_maxima(dist, config.h_px))
    regions = watershed(-dist, markers, mask=mask)
    if n_markers < 2:
        return regions
    # Cut length between neighbouring regions from horizontal and vertical pixel adjacencies.
    pairs = []
    for a, b, axis in ((regions[:, :-1], regions[:, 1:], 0), (regions[:-1, :], regions[1:, :], 1)):
        diff = (a != b) & (a > 0) & (b > 0)
        lo = np.minimum(a[diff], b[diff]).astype(np.int64)
        hi = np.maximum(a[diff], b[diff]).astype(np.int64)
        pairs.append((lo, hi, np.full(lo.size, axis)))
    lo = np.concatenate([p[0] for p in pairs])
    hi = np.concatenate([p[1] for p in pairs])
    axis = np.concatenate([p[2] for p in pairs])
    if lo.size == 0:
        return regions
    code = lo * (n_markers + 1) + hi
    codes, inverse = np.unique(code, return_inverse=True)
    n_h = np.bincount(inverse, weights=(axis == 0), minlength=codes.size)
    n_v = np.bincount(inverse, weights=(axis == 1), minlength=codes.size)
    cut = np.hypot(n_h, n_v)
    ra, rb = np.divmod(codes, n_markers + 1)
    peak = np.concatenate([[0.0], ndimage.maximum(dist, regions, np.arange(1, n_markers + 1))])
    inscribed = 2.0 * np.minimum(peak[ra], peak[rb])
    merge = cut > config.merge_neck_ratio * inscribed
    graph = coo_matrix(
        (np.ones(int(merge.sum())), (ra[merge], rb[merge])), shape=(n_markers + 1, n_markers + 1)
    )
    _, component = connected_components(graph, directed=False)
    # Relabel: background stays 0, merged regions share one consecutive label.
    _, new_ids = np.unique(component[1:], return_inverse=True)
    lookup = np.concatenate([[0], new_ids + 1]).astype(np.int32)
    return lookup[regions]


def segment(image: np.ndarray, config: SegmentationConfig | None = None) -> np.ndarray:
    """Label the particles of an SE micrograph.

    Parameters
    ----------
    image : numpy.ndarray
        2-D grayscale image, real-valued and finite (float in [0, 1] as read by
        :func:`semqa.imageio.read_image`; any linear scale works).
    config : SegmentationConfig, optional
        Parameters; defaults when None.

    Returns
    -------
    numpy.ndarray
        ``int32`` label image of the same shape, 0 = background, particles 1…n. An image
        without particles (flat, or only noise) gives all zeros.

    Raises
    ------
    InputError
        If the image is not 2-D, smaller than 3 × 3, not real-valued, or not finite.
    """
    config = config or SegmentationConfig()
    image = _check_image(image)
    empty = np.zeros(image.shape, dtype=np.int32)
    coarse = _otsu_mask(ndimage.gaussian_filter(image, 1.0))
    if coarse is None:
        return empty
    diameter = config.particle_diameter_px or _ecd_scale(coarse)
    if diameter is None:
        return empty
    sigma = float(np.clip(config.denoise_sigma_rel * diameter, config.denoise_sigma_min_px, config.denoise_sigma_max_px))
    smooth = ndimage.gaussian_filter(image, sigma) if sigma > 0 else image
    bg = _background(smooth, ~ndimage.binary_dilation(coarse, iterations=2), config.background_sigma_rel * diameter)
    flat = smooth / bg
    mask = _otsu_mask(flat)
    if mask is None:
        return empty
    noise_sd = _noise_sd(image / bg) / (2.0 * math.sqrt(math.pi) * sigma) if sigma > 0 else _noise_sd(flat)
    gap = max(1, math.ceil(2.0 * sigma))
    mask = _local_threshold_mask(flat, mask, gap, max(2.0, config.ring_px_rel * diameter), noise_sd, config)
    if config.fill_holes:
        mask = ndimage.binary_fill_holes(mask)
    lab, _ = ndimage.label(mask)
    sizes = np.bincount(lab.ravel())
    mask = (sizes >= config.min_object_px)[lab] & mask
    if not mask.any():
        return empty
    if config.split_touching:
        return _split(mask, config).astype(np.int32)
    return ndimage.label(mask)[0].astype(np.int32)
