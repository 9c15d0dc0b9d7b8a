"""Compact VGG-style super-resolution generator (SRVGGNetCompact, Real-ESRGAN).

Wang et al., "Real-ESRGAN: Training Real-World Blind Super-Resolution with Pure Synthetic
Data", ICCVW 2021 (``realesr-general-x4v3``), after ESPCN (Shi et al., CVPR 2016): every
convolution runs at low resolution, one pixel shuffle upsamples at the end, and the
network learns the residual over a nearest-neighbour upsampled input.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from semqa.sr.archs.registry import ARCHS


@ARCHS.register("srvgg")
class SRVGGNetCompact(nn.Module):
    """Grayscale SRVGGNetCompact.

    Parameters
    ----------
    num_feat : int
        Feature channels of the body.
    num_conv : int
        3×3 convolutions after the first one (each followed by PReLU).
    scale : int
        Upscaling factor (2 or 4).
    """

    def __init__(self, num_feat: int = 32, num_conv: int = 8, scale: int = 2) -> None:
        super().__init__()
        self.scale = scale
        layers: list[nn.Module] = [nn.Conv2d(1, num_feat, 3, padding=1), nn.PReLU(num_feat)]
        for _ in range(num_conv):
            layers += [nn.Conv2d(num_feat, num_feat, 3, padding=1), nn.PReLU(num_feat)]
        layers += [nn.Conv2d(num_feat, scale * scale, 3, padding=1), nn.PixelShuffle(scale)]
        self.body = nn.Sequential(*layers)
        #: Radius in LR pixels beyond which an input pixel cannot affect an output pixel.
        self.receptive_radius = num_conv + 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x) + F.interpolate(x, scale_factor=self.scale, mode="nearest")
