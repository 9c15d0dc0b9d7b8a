"""Differentiable SSIM with a Gaussian window (Wang et al., IEEE TIP 13(4), 2004).

Same definition as :func:`skimage.metrics.structural_similarity` with
``gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=1`` (the
paper's settings); the tests check the two agree. skimage's is NumPy-only, so training
needs this torch version for gradients.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

_K1, _K2, _SIGMA, _TRUNCATE = 0.01, 0.03, 1.5, 3.5


def _gaussian_window(device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    radius = int(_TRUNCATE * _SIGMA + 0.5)  # skimage's gaussian filter truncation → 11 taps
    x = torch.arange(-radius, radius + 1, device=device, dtype=dtype)
    g = torch.exp(-(x**2) / (2 * _SIGMA**2))
    g = g / g.sum()
    return (g[:, None] * g[None, :])[None, None]


def ssim(pred: torch.Tensor, target: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """Mean SSIM of ``(N, 1, H, W)`` image batches, over the valid (unpadded) region."""
    w = _gaussian_window(pred.device, pred.dtype)
    c1, c2 = (_K1 * data_range) ** 2, (_K2 * data_range) ** 2

    def blur(t: torch.Tensor) -> torch.Tensor:
        return F.conv2d(t, w)

    mu_x, mu_y = blur(pred), blur(target)
    sxx = blur(pred * pred) - mu_x**2
    syy = blur(target * target) - mu_y**2
    sxy = blur(pred * target) - mu_x * mu_y
    s = ((2 * mu_x * mu_y + c1) * (2 * sxy + c2)) / ((mu_x**2 + mu_y**2 + c1) * (sxx + syy + c2))
    return s.mean()


def ssim_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``1 − SSIM``."""
    return 1.0 - ssim(pred, target)
