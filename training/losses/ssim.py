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


def _gaussian_taps(device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    radius = int(_TRUNCATE * _SIGMA + 0.5)  # skimage's gaussian filter truncation → 11 taps
    x = torch.arange(-radius, radius + 1, device=device, dtype=dtype)
    g = torch.exp(-(x**2) / (2 * _SIGMA**2))
    return g / g.sum()


def ssim(pred: torch.Tensor, target: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """Mean SSIM of ``(N, 1, H, W)`` image batches, over the valid (unpadded) region."""
    g = _gaussian_taps(pred.device, pred.dtype)
    c1, c2 = (_K1 * data_range) ** 2, (_K2 * data_range) ** 2
    # The five local moments as channels, blurred by one separable depthwise Gaussian
    # (two 1-D passes): much cheaper than five 2-D convolutions, forward and backward.
    maps = torch.cat([pred, target, pred * pred, target * target, pred * target], dim=1)
    maps = F.conv2d(maps, g.view(1, 1, 1, -1).expand(5, 1, 1, -1), groups=5)
    maps = F.conv2d(maps, g.view(1, 1, -1, 1).expand(5, 1, -1, 1), groups=5)
    mu_x, mu_y, exx, eyy, exy = maps.unbind(1)
    sxx = exx - mu_x**2
    syy = eyy - mu_y**2
    sxy = exy - mu_x * mu_y
    s = ((2 * mu_x * mu_y + c1) * (2 * sxy + c2)) / ((mu_x**2 + mu_y**2 + c1) * (sxx + syy + c2))
    return s.mean()


def ssim_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``1 − SSIM``."""
    return 1.0 - ssim(pred, target)
