"""Evaluation of a generator on held-out pairs: PSD fidelity first, then PSNR/SSIM.

The generator exists to make a low-resolution micrograph give the same PSD as the
high-resolution one, so the headline metrics compare PSDs: particles are segmented and
measured on the HR image, the SR image, the bicubic upscale and the LR image itself with
the same functions the product uses (:func:`semqa.particles.segmentation.segment`,
:func:`semqa.particles.measure.measure_particles`, :func:`semqa.stats.psd.d_values`), pooled over images.
The registry's promotion gates call :func:`evaluate_generator` too.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image
from pydantic import BaseModel, Field
from scipy.stats import wasserstein_distance
from skimage.metrics import peak_signal_noise_ratio, structural_similarity
from torch import nn

from semqa.errors import InputError
from semqa.sr.inference import Upscaler
from semqa.particles.measure import match_particles, measure_particles
from semqa.stats.psd import d_values
from semqa.results import ModelRef
from semqa.particles.segmentation import SegmentationConfig, segment
from training.data import Pair


class EvalMetrics(BaseModel):
    """Quality of a generator on held-out pairs (means over images; PSDs pooled over images).

    Relative errors are ``|D(x) − D(HR)| / D(HR)`` of number-weighted D-values; ``None`` where
    a PSD has no particles.
    """

    n_images: int
    psnr: float = Field(description="dB, SR vs HR (skimage.metrics.peak_signal_noise_ratio, data range 1)")
    ssim: float = Field(description="SR vs HR (skimage.metrics.structural_similarity, Gaussian σ=1.5)")
    bicubic_psnr: float
    bicubic_ssim: float
    psnr_gain_db: float = Field(description="psnr − bicubic_psnr")
    n_particles_hr: int
    n_particles_sr: int
    d10_rel_err: float | None = None
    d50_rel_err: float | None = None
    d90_rel_err: float | None = None
    bicubic_d50_rel_err: float | None = None
    lr_d50_rel_err: float | None = Field(None, description="PSD measured directly on the LR image")
    wasserstein: float | None = Field(None, description="1-D Wasserstein distance of SR vs HR ECDs, in size_unit")
    recall: float = Field(description="HR particles matched by an SR particle (IoU > 0.5)")
    precision: float = Field(description="SR particles matched by an HR particle; 1 − hallucination rate")
    size_unit: str = Field(description="'um' when every HR image has a pixel size, else 'px' (relative errors are unit-free)")

    def mlflow_metrics(self, prefix: str = "val_") -> dict[str, float]:
        """The numeric fields as MLflow metrics (undefined ones left out)."""
        return {
            prefix + k: float(v)
            for k, v in self.model_dump().items()
            if isinstance(v, (int, float)) and not isinstance(v, bool) and v is not None and np.isfinite(v)
        }


def bicubic_upscale(lr: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Bicubic (Keys a = −0.5, as MATLAB ``imresize`` and PIL) upscale to ``shape``, clipped to [0, 1]."""
    out = Image.fromarray(np.asarray(lr, dtype=np.float32), mode="F").resize((shape[1], shape[0]), Image.Resampling.BICUBIC)
    return np.clip(np.asarray(out), 0.0, 1.0)


def comparison_grid(lr: np.ndarray, bicubic: np.ndarray, sr: np.ndarray, hr: np.ndarray) -> np.ndarray:
    """LR (nearest) | bicubic | SR | HR side by side as one ``uint8`` image."""
    s = hr.shape[0] // lr.shape[0]
    lr_big = np.kron(lr, np.ones((s, s), dtype=np.float32))[: hr.shape[0], : hr.shape[1]]
    sep = np.ones((hr.shape[0], 4), dtype=np.float32)
    row = np.concatenate([lr_big, sep, bicubic, sep, sr, sep, hr], axis=1)
    return (np.clip(row, 0, 1) * 255).round().astype(np.uint8)


def _rel_err(x: np.ndarray, ref: np.ndarray, i: int) -> float | None:
    if x.size == 0 or ref.size == 0:
        return None
    a, b = d_values(x)[i], d_values(ref)[i]
    return float(abs(a - b) / b)


def as_upscaler(model: Upscaler | nn.Module, tile_size: int = 256) -> Upscaler:
    """Wrap a bare generator module (e.g. the EMA copy during training) for tiled inference."""
    if isinstance(model, Upscaler):
        return model
    device = next(model.parameters()).device
    return Upscaler(model, ModelRef(name="in-training", scale=int(model.scale)), device, tile_size=tile_size)


def evaluate_generator(
    model: Upscaler | nn.Module,
    pairs: Sequence[Pair],
    *,
    segmentation: SegmentationConfig | None = None,
    min_pixels: int | None = None,
    tile_size: int = 256,
) -> EvalMetrics:
    """Super-resolve each pair's LR image and compare with its HR image.

    Parameters
    ----------
    model : Upscaler or torch.nn.Module
        The generator (a module is evaluated as is; use the EMA copy).
    pairs : sequence of Pair
        Held-out pairs, e.g. from :func:`training.data.load_pairs`.
    segmentation : SegmentationConfig, optional
        Segmentation settings; the product's defaults when omitted.
    min_pixels : int, optional
        Smallest particle measured, in pixels of the image analysed (as ``semqa analyze``
        does, so LR-direct loses the small particles it would lose in the product);
        default :data:`semqa.particles.measure.DEFAULT_MIN_PIXELS`.
    """
    from semqa.particles.measure import DEFAULT_MIN_PIXELS

    if not pairs:
        raise InputError("no held-out pairs to evaluate on")
    up = as_upscaler(model, tile_size)
    s = up.scale
    seg = segmentation or SegmentationConfig()
    min_px = min_pixels or DEFAULT_MIN_PIXELS
    known = all(p.hr_pixel_size_um for p in pairs)
    psnr, ssim, b_psnr, b_ssim = [], [], [], []
    ecd: dict[str, list[float]] = {"hr": [], "sr": [], "bicubic": [], "lr": []}
    matched = n_true = n_pred = 0
    for p in pairs:
        if p.lr is None:
            raise InputError(f"{p.name}: no LR image to evaluate on")
        hr = p.hr
        sr = up.upscale(p.lr)
        if sr.shape != hr.shape:
            raise InputError(f"{p.name}: SR shape {sr.shape} differs from HR {hr.shape} (scale {s})")
        bic = bicubic_upscale(p.lr, hr.shape)
        for out, ps, ss in ((sr, psnr, ssim), (bic, b_psnr, b_ssim)):
            ps.append(peak_signal_noise_ratio(hr, out, data_range=1.0))
            ss.append(structural_similarity(hr, out, data_range=1.0, gaussian_weights=True, sigma=1.5, use_sample_covariance=False))
        px = p.hr_pixel_size_um if known else 1.0
        labels = {}
        for key, img, size in (("hr", hr, px), ("sr", sr, px), ("bicubic", bic, px), ("lr", p.lr, px * s)):
            labels[key] = segment(img, seg)
            parts, _ = measure_particles(labels[key], size, image_name=p.name, min_pixels=min_px)
            ecd[key].extend(q.ecd_um for q in parts)
        match = match_particles(labels["sr"], labels["hr"])
        matched, n_true, n_pred = matched + match.matched, n_true + match.n_true, n_pred + match.n_pred
    e = {k: np.asarray(v, dtype=float) for k, v in ecd.items()}
    return EvalMetrics(
        n_images=len(pairs),
        psnr=float(np.mean(psnr)),
        ssim=float(np.mean(ssim)),
        bicubic_psnr=float(np.mean(b_psnr)),
        bicubic_ssim=float(np.mean(b_ssim)),
        psnr_gain_db=float(np.mean(psnr) - np.mean(b_psnr)),
        n_particles_hr=int(e["hr"].size),
        n_particles_sr=int(e["sr"].size),
        d10_rel_err=_rel_err(e["sr"], e["hr"], 0),
        d50_rel_err=_rel_err(e["sr"], e["hr"], 1),
        d90_rel_err=_rel_err(e["sr"], e["hr"], 2),
        bicubic_d50_rel_err=_rel_err(e["bicubic"], e["hr"], 1),
        lr_d50_rel_err=_rel_err(e["lr"], e["hr"], 1),
        wasserstein=float(wasserstein_distance(e["sr"], e["hr"])) if e["sr"].size and e["hr"].size else None,
        recall=matched / n_true if n_true else 1.0,
        precision=matched / n_pred if n_pred else 1.0,
        size_unit="um" if known else "px",
    )
