"""Per-image quality measures that the expectation suites check.

Each function takes a 2-D ``float`` image in [0, 1] as :func:`semqa.io.images.read_image`
returns it (0 is code 0, 1 the top code of the stored bit depth).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import tifffile
from PIL import Image
from scipy import ndimage

#: Percentiles bounding the dynamic range; 0.5 % at each end
#: keeps isolated hot or dead pixels from setting the range.
RANGE_PERCENTILES: tuple[float, float] = (0.5, 99.5)


def content_hash(image: np.ndarray) -> str:
    """``sha256:<hex>`` of the decoded pixels and their shape.

    Two files with the same pixels but different metadata or encoding are duplicates,
    which a digest of the file bytes would miss.
    """
    arr = np.ascontiguousarray(image, dtype=np.float32)
    h = hashlib.sha256(repr(arr.shape).encode())
    h.update(arr.tobytes())
    return "sha256:" + h.hexdigest()


def intensity_range(image: np.ndarray) -> tuple[float, float]:
    """The 0.5th and 99.5th percentiles (:data:`RANGE_PERCENTILES`)."""
    lo, hi = np.percentile(image, RANGE_PERCENTILES)
    return float(lo), float(hi)


#: Immerkær's mask: the difference of two discrete Laplacians, zero on any locally planar
#: (and, to first order, quadratic) signal, so its response on an image is mostly noise.
#: Its squared weights sum to 36, hence the 6 in :func:`noise_sd`.
IMMERKAER_MASK = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], dtype=np.float64)


def noise_sd(image: np.ndarray) -> float:
    """Standard deviation of the pixel noise of ``image``, from the image itself.

    Immerkær's estimator (J. Immerkær, "Fast noise variance estimation", Computer Vision
    and Image Understanding 64(2), 300–302, 1996): ``σ = sqrt(π/2) · mean|I * M| / 6`` with
    :data:`IMMERKAER_MASK`, on the interior (no padded border). It assumes white noise,
    which shot noise is: every SEM pixel counts its own electrons (Poisson), after the probe
    blur. Shot-noise variance grows with the signal (``I / D`` at dose ``D``); the mean
    absolute response then gives the mean of the per-pixel σ, which by Jensen's inequality
    is at most the root of the mean variance, and for the two-level contrast of particles
    on a substrate within a few per cent of it. Edges add a little (the mask is not zero on
    a step), so the noise is, if anything, overestimated.
    """
    img = np.asarray(image, dtype=np.float64)
    if img.shape[0] < 3 or img.shape[1] < 3:
        return 0.0
    response = ndimage.convolve(img, IMMERKAER_MASK, mode="reflect")[1:-1, 1:-1]
    return float(np.sqrt(np.pi / 2.0) * np.abs(response).mean() / 6.0)


def _stored_array(path: Path) -> np.ndarray:
    with open(path, "rb") as fh:
        magic = fh.read(4)
    if magic in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return tifffile.imread(path, key=0)
    with Image.open(path) as img:
        return np.asarray(img.convert("RGB") if img.mode in ("P", "CMYK") else img)


def stored_channels(path: Path) -> int:
    """Samples per pixel as stored in the file (1 gray, 2 gray+alpha, 3 RGB, 4 RGBA).

    Read from the header only: a TIFF page's shape or PIL's band list.
    """
    with open(path, "rb") as fh:
        magic = fh.read(4)
    if magic in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        with tifffile.TiffFile(path) as tif:
            page = tif.pages[0]
            return int(page.samplesperpixel)  # type: ignore[union-attr]
    with Image.open(path) as img:
        return len(img.getbands()) if img.mode != "P" else 3


def colour_spread(path: Path) -> float:
    """How far a stored image is from gray: 99th percentile of max − min over the colour channels.

    0 for single-channel files. A gray micrograph saved as RGB has equal channels (spread
    ≈ 0) and converts to luminance without loss; a false-colour or annotated image does
    not, since its luminance is not the detector signal. Only colour files are decoded.
    """
    if stored_channels(path) < 3:
        return 0.0
    arr = _stored_array(path)
    rgb = arr[..., :3].astype(np.float64)
    top = float(np.iinfo(arr.dtype).max) if np.issubdtype(arr.dtype, np.integer) else 1.0
    spread = (rgb.max(axis=-1) - rgb.min(axis=-1)) / top
    return float(np.percentile(spread, 99))
