"""How an SEM scan turns a specimen's true signal into an image: the one noise model.

Two scans of the same field are modelled, both from a noise-free secondary-electron
yield map at high resolution (HR) scaled to [0, 1]:

* **HR scan** (:func:`scan`): probe point-spread blur, then shot noise at the HR dose.
* **LR "fast" scan** (:func:`degrade`): probe blur, *area integration* over
  ``scale × scale`` HR pixels (an SEM pixel integrates the signal over its dwell along
  the raster, so a coarse pixel averages the area it covers, rather than sampling a
  point), then shot noise at a lower dose (a shorter dwell time collects fewer
  electrons) and optional read-out noise.

Shot noise is Poisson: a pixel with expected yield ``I`` at a dose of ``D`` electrons
(the count a pixel of yield 1 would collect) records ``Poisson(I·D)/D``, so its
signal-to-noise ratio is ``sqrt(I·D)`` (Reimer, *Scanning Electron Microscopy*, 2nd ed.,
Springer 1998, §4.1; Joy, "Noise and its effects on the low-voltage SEM", 2008).

The probe is modelled as a Gaussian; its standard deviation is FWHM/2.355. The default
LR probe has a FWHM of one LR pixel (``sigma = 0.425 × scale`` HR pixels): a fast,
low-magnification scan is set up with a probe about as wide as its pixel, since a
smaller probe would only alias.

Training's HR-only mode and :mod:`semqa.synth.scenes` both call :func:`degrade`, so paired
and synthesised low-resolution images come from the same model.
"""

from __future__ import annotations

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator
from scipy import ndimage
from skimage.measure import block_reduce

from semqa.errors import InputError

#: Gaussian FWHM / sigma.
FWHM_PER_SIGMA: float = 2.0 * np.sqrt(2.0 * np.log(2.0))

def edge_blur_sigma_px(probe_fwhm_px: float, smoothing_sigma_px: float) -> float:
    """Sigma (px) of a step edge's blur by a Gaussian probe of FWHM ``probe_fwhm_px`` and a Gaussian
    smoothing of sigma ``smoothing_sigma_px`` (variances add: ``hypot(FWHM / 2.355, sigma)``).

    >>> round(edge_blur_sigma_px(1.0, 0.0), 4)
    0.4247
    """
    return float(np.hypot(probe_fwhm_px / FWHM_PER_SIGMA, smoothing_sigma_px))


#: Scale factors the project's generators are built for.
SUPPORTED_SCALES: tuple[int, ...] = (2, 4)


class DegradationConfig(BaseModel):
    """The LR fast scan: pixel pitch, probe blur and dose."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    scale: int = Field(4, description="LR pixel pitch in HR pixels (2 or 4)")
    psf_sigma_hr_px: float | None = Field(
        None,
        ge=0,
        description="Gaussian probe sigma in HR pixels; None → FWHM of one LR pixel (0.425 × scale)",
    )
    dose: float = Field(
        80.0,
        gt=0,
        description="electrons per LR pixel at yield 1.0; lower than the HR scan's per-pixel dose (fast scan)",
    )
    read_noise: float = Field(
        0.005, ge=0, description="sd of additive Gaussian read-out noise, in units of the [0, 1] signal"
    )

    @field_validator("scale")
    @classmethod
    def _check_scale(cls, value: int) -> int:
        if value not in SUPPORTED_SCALES:
            raise ValueError(f"scale must be one of {SUPPORTED_SCALES}, got {value}")
        return value

    @property
    def psf_sigma(self) -> float:
        """Probe sigma in HR pixels, with the default resolved."""
        if self.psf_sigma_hr_px is not None:
            return self.psf_sigma_hr_px
        return self.scale / FWHM_PER_SIGMA


def _check_image(image: np.ndarray, what: str) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim != 2:
        raise InputError(f"{what} must be a 2-D grayscale image, got shape {image.shape}")
    if image.size == 0:
        raise InputError(f"{what} is empty")
    if not np.issubdtype(image.dtype, np.number) or np.issubdtype(image.dtype, np.complexfloating):
        raise InputError(f"{what} must be real-valued, got {image.dtype}")
    image = image.astype(np.float64)
    if not np.all(np.isfinite(image)):
        raise InputError(f"{what} contains NaN or infinite values")
    return image


def shot_noise(
    image: np.ndarray, dose: float, rng: np.random.Generator, *, read_noise: float = 0.0
) -> np.ndarray:
    """Poisson shot noise at ``dose`` electrons per unit yield, plus Gaussian read noise.

    Parameters
    ----------
    image : numpy.ndarray
        Expected yield per pixel, ≥ 0 (values below 0 are treated as 0).
    dose : float
        Electrons a pixel of yield 1.0 collects.
    rng : numpy.random.Generator
        The only source of randomness (determinism by seed).
    read_noise : float
        Standard deviation of additive Gaussian noise, in yield units.

    Returns
    -------
    numpy.ndarray
        ``float32`` image clipped to [0, 1].
    """
    if not (np.isfinite(dose) and dose > 0):
        raise InputError(f"dose must be a positive number of electrons, got {dose}")
    if not (np.isfinite(read_noise) and read_noise >= 0):
        raise InputError(f"read noise must be ≥ 0, got {read_noise}")
    lam = np.clip(np.asarray(image, dtype=np.float64), 0.0, None) * dose
    noisy = rng.poisson(lam).astype(np.float64) / dose
    if read_noise > 0:
        noisy += rng.normal(0.0, read_noise, size=noisy.shape)
    return np.clip(noisy, 0.0, 1.0).astype(np.float32)


def scan(
    image: np.ndarray,
    *,
    psf_sigma_px: float,
    dose: float,
    rng: np.random.Generator,
    read_noise: float = 0.0,
) -> np.ndarray:
    """A scan at the image's own pixel pitch: Gaussian probe blur, then shot noise.

    This is how :mod:`semqa.synth.scenes` renders the HR image from its noise-free yield map.
    """
    image = _check_image(image, "image")
    if not (np.isfinite(psf_sigma_px) and psf_sigma_px >= 0):
        raise InputError(f"PSF sigma must be ≥ 0 pixels, got {psf_sigma_px}")
    blurred = ndimage.gaussian_filter(image, psf_sigma_px, mode="reflect") if psf_sigma_px > 0 else image
    return shot_noise(blurred, dose, rng, read_noise=read_noise)


def degrade(hr: np.ndarray, config: DegradationConfig, rng: np.random.Generator) -> np.ndarray:
    """The LR fast scan of an HR image.

    Probe blur (Gaussian, ``config.psf_sigma`` HR pixels), area integration by the mean
    over ``scale × scale`` blocks (:func:`skimage.measure.block_reduce`), Poisson shot
    noise at ``config.dose`` electrons per LR pixel, Gaussian read noise, clipping to
    [0, 1]. An HR image whose sides are not multiples of ``scale`` is cropped at the
    bottom and right first, so LR pixel ``(i, j)`` covers HR pixels
    ``[i·s, (i+1)·s) × [j·s, (j+1)·s)``.

    Parameters
    ----------
    hr : numpy.ndarray
        2-D HR image in [0, 1], ideally noise-free (a real HR micrograph works too: its
        own noise is averaged down by the block integration).
    config : DegradationConfig
        Scale, probe and dose.
    rng : numpy.random.Generator
        Source of the noise.

    Returns
    -------
    numpy.ndarray
        ``float32`` LR image of shape ``(h // scale, w // scale)``.
    """
    hr = _check_image(hr, "HR image")
    s = config.scale
    h, w = (hr.shape[0] // s) * s, (hr.shape[1] // s) * s
    if h == 0 or w == 0:
        raise InputError(f"HR image {hr.shape[1]}×{hr.shape[0]} is smaller than one LR pixel at scale {s}")
    sigma = config.psf_sigma
    # Blur before cropping so the crop edge sees real neighbours, not the reflection.
    blurred = ndimage.gaussian_filter(hr, sigma, mode="reflect") if sigma > 0 else hr
    integrated = block_reduce(blurred[:h, :w], (s, s), np.mean)
    return shot_noise(integrated, config.dose, rng, read_noise=config.read_noise)
