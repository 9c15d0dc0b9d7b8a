"""The one evaluation of a generator: does the super-resolved scan give the HR scan's PSD?

What is compared
----------------
For each held-out pair (one field of view scanned at high and low resolution) the LR image
is super-resolved, and the SR image, the bicubic upscale and the LR image itself are
analysed with the product's own segment → measure step (:func:`semqa.analysis.measure_image`,
driven by an :class:`semqa.analysis.AnalysisConfig`). Each is compared with the analysis of
the **HR scan of the same field**: the HR scan is the reference the product promises to
match ("a PSD that matches what a high-resolution scan would give"), not the synthetic ground
truth, which real evaluation sets do not have. Particles are pooled over images.

Training (held-out metrics of a run), the promotion gates (:func:`evaluate_model_uri` is the
:data:`semqa.registry.promotion.Evaluator` they use by default) and the benchmarks all call
:func:`evaluate_generator`; the gate rules that read its metrics live in
:mod:`semqa.registry.promotion`.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from functools import partial
from pathlib import Path

import numpy as np
from PIL import Image
from pydantic import BaseModel, Field
from scipy.stats import wasserstein_distance
from skimage.metrics import peak_signal_noise_ratio, structural_similarity
from torch import nn

from semqa.analysis import AnalysisConfig, MeasuredImage, measure_image
from semqa.errors import InputError
from semqa.particles.measure import match_particles
from semqa.pool import map_ordered, resolve_workers
from semqa.results import ModelRef
from semqa.sr.inference import Upscaler, load_upscaler
from semqa.sr.pairs import Pair, load_pairs
from semqa.stats.psd import d_values


class EvalMetrics(BaseModel):
    """Quality of a generator on held-out pairs (image metrics are means over images; PSDs pooled).

    Relative errors are ``|D(x) − D(HR)| / D(HR)`` of number-weighted ECD D-values, ``x`` the
    SR image unless the name says otherwise; ``None`` where a PSD has no particles.
    """

    n_images: int
    psnr: float = Field(description="dB, SR vs HR (skimage.metrics.peak_signal_noise_ratio, data range 1)")
    ssim: float = Field(description="SR vs HR (skimage.metrics.structural_similarity, Gaussian σ=1.5)")
    bicubic_psnr: float = Field(description="dB, bicubic upscale vs HR")
    bicubic_ssim: float
    psnr_gain_db: float = Field(description="psnr − bicubic_psnr")
    n_particles_hr: int
    n_particles_sr: int
    d10_rel_error: float | None = None
    d50_rel_error: float | None = None
    d90_rel_error: float | None = None
    bicubic_d50_rel_error: float | None = None
    lr_d50_rel_error: float | None = Field(None, description="PSD measured directly on the LR image")
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


def as_upscaler(model: Upscaler | nn.Module, tile_size: int = 256) -> Upscaler:
    """Wrap a bare generator module (e.g. the EMA copy during training) for tiled inference."""
    if isinstance(model, Upscaler):
        return model
    device = next(model.parameters()).device
    return Upscaler(model, ModelRef(name="in-training", scale=int(model.scale)), device, tile_size=tile_size)


def _rel_error(x: np.ndarray, ref: np.ndarray, i: int) -> float | None:
    if x.size == 0 or ref.size == 0:
        return None
    a, b = d_values(x)[i], d_values(ref)[i]
    return float(abs(a - b) / b)


#: The analyses of one pair, in this order: the HR scan (the reference), SR, bicubic, LR direct.
_VIEWS: tuple[str, ...] = ("hr", "sr", "bicubic", "lr")


def _measure_view(item: tuple[np.ndarray, float, str, bool], config: AnalysisConfig) -> MeasuredImage:
    """:func:`semqa.analysis.measure_image` of one ``(image, pixel size, name, upscaled)`` (for the pool)."""
    image, pixel_size, name, upscaled = item
    return measure_image(image, pixel_size, config, name=name, upscaled=upscaled)


def evaluate_generator(
    model: Upscaler | nn.Module,
    pairs: Sequence[Pair],
    config: AnalysisConfig | None = None,
    *,
    tile_size: int = 256,
    workers: int | None = 1,
) -> EvalMetrics:
    """Super-resolve each pair's LR image and compare its analysis with the HR scan's.

    Parameters
    ----------
    model : Upscaler or torch.nn.Module
        The generator (a module is evaluated as is; use the EMA copy).
    pairs : sequence of Pair
        Held-out pairs, e.g. from :func:`semqa.sr.pairs.load_pairs`.
    config : AnalysisConfig, optional
        Segmentation and exclusion settings of the analysis; the product's defaults when
        omitted. ``min_pixels`` counts pixels of the image analysed, as ``semqa analyze``
        does, so LR-direct loses the small particles it would lose in the product.
    tile_size : int
        Tile side for inference, LR pixels.
    workers : int or None
        Processes segmenting and measuring the four views of each pair (``None``: every core).
        Super-resolution stays in this process; the metrics do not depend on ``workers``.

    Examples
    --------
    >>> import torch
    >>> from semqa.sr.archs import GeneratorConfig, build_generator
    >>> g = build_generator(GeneratorConfig(num_feat=8, num_conv=2, scale=2))
    >>> hr = np.zeros((64, 64), np.float32); lr = hr[::2, ::2].copy()
    >>> evaluate_generator(g, [Pair("a", hr, lr, 0.1, "sha256:a", "sha256:b")]).n_images
    1
    """
    if not pairs:
        raise InputError("no held-out pairs to evaluate on")
    config = config or AnalysisConfig()
    up = as_upscaler(model, tile_size)
    s = up.scale
    known = all(p.hr_pixel_size_um for p in pairs)
    psnr, ssim, b_psnr, b_ssim = [], [], [], []
    ecd: dict[str, list[float]] = {key: [] for key in _VIEWS}
    matched = n_true = n_pred = 0

    def views() -> Iterator[tuple[np.ndarray, float, str, bool]]:
        # A generator: the pool draws the next pair's views (super-resolved here) only when it
        # has room, so at most a few pairs' images are held at once.
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
            for key, img, size in zip(_VIEWS, (hr, sr, bic, p.lr), (px, px, px, px * s), strict=True):
                yield img, size, p.name, key in ("sr", "bicubic")

    n = resolve_workers(workers, len(_VIEWS) * len(pairs))
    labels: dict[str, np.ndarray] = {}
    for i, result in enumerate(map_ordered(partial(_measure_view, config=config), views(), n)):
        key = _VIEWS[i % len(_VIEWS)]
        labels[key] = result.labels
        ecd[key].extend(q.ecd_um for q in result.particles)
        if key == _VIEWS[-1]:  # the pair's four views are in
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
        d10_rel_error=_rel_error(e["sr"], e["hr"], 0),
        d50_rel_error=_rel_error(e["sr"], e["hr"], 1),
        d90_rel_error=_rel_error(e["sr"], e["hr"], 2),
        bicubic_d50_rel_error=_rel_error(e["bicubic"], e["hr"], 1),
        lr_d50_rel_error=_rel_error(e["lr"], e["hr"], 1),
        wasserstein=float(wasserstein_distance(e["sr"], e["hr"])) if e["sr"].size and e["hr"].size else None,
        recall=matched / n_true if n_true else 1.0,
        precision=matched / n_pred if n_pred else 1.0,
        size_unit="um" if known else "px",
    )


def evaluate_model_uri(model_uri: str, eval_dir: str | Path, config: AnalysisConfig | None = None) -> EvalMetrics:
    """Evaluate a registered generator (``models:/…``) on a pair folder, on the CPU, its analyses on every core.

    The :data:`semqa.registry.promotion.Evaluator` the promotion gates use by default.
    """
    upscaler = load_upscaler(model_uri, device="cpu")
    return evaluate_generator(upscaler, load_pairs(eval_dir, upscaler.scale), config, workers=None)
