"""Pixel and edge losses."""

from __future__ import annotations

import torch
import torch.nn.functional as F

_SOBEL_X = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]]) / 8.0


def charbonnier_loss(pred: torch.Tensor, target: torch.Tensor, eps: float = 1e-3) -> torch.Tensor:
    """Mean Charbonnier distance ``sqrt((pred − target)² + eps²)``.

    A differentiable L1 (Lai et al., "Deep Laplacian Pyramid Networks", CVPR 2017), robust
    to outliers such as shot-noise spikes in the HR target.
    """
    return torch.sqrt((pred - target) ** 2 + eps * eps).mean()


def pixel_loss(pred: torch.Tensor, target: torch.Tensor, kind: str = "charbonnier") -> torch.Tensor:
    """``"l1"`` or ``"charbonnier"`` distance between images."""
    if kind == "l1":
        return F.l1_loss(pred, target)
    if kind == "charbonnier":
        return charbonnier_loss(pred, target)
    raise ValueError(f"unknown pixel loss {kind!r}")


def sobel(image: torch.Tensor) -> torch.Tensor:
    """Horizontal and vertical Sobel derivatives of ``(N, 1, H, W)`` images → ``(N, 2, H, W)``."""
    kx = _SOBEL_X.to(image)
    kernel = torch.stack([kx, kx.T])[:, None]
    return F.conv2d(F.pad(image, (1, 1, 1, 1), mode="replicate"), kernel)


def gradient_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """L1 distance of Sobel gradients: penalises blurred or displaced particle outlines.

    Gradient-profile losses sharpen edges in SR (Ma et al., "Structure-Preserving Super
    Resolution with Gradient Guidance", CVPR 2020); the outline is what segmentation and
    hence the PSD depend on.
    """
    return F.l1_loss(sobel(pred), sobel(target))
