"""RRDB generator (ESRGAN), grayscale, for GPU training.

Wang et al., "ESRGAN: Enhanced Super-Resolution Generative Adversarial Networks", ECCVW 2018:
residual-in-residual dense blocks without batch normalization, residual scaling 0.2,
nearest-neighbour upsampling followed by convolutions. Unlike the original, the output is a
residual over the bilinearly upsampled input, so training starts from a sensible image.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from semqa.sr.archs.registry import ARCHS

_RESIDUAL_SCALE = 0.2  # ESRGAN §3.2: scaling residuals by 0.2 stabilises deep training.


class ResidualDenseBlock(nn.Module):
    """Five densely connected 3×3 convolutions with a scaled residual."""

    def __init__(self, num_feat: int, num_grow_ch: int) -> None:
        super().__init__()
        self.convs = nn.ModuleList(
            nn.Conv2d(num_feat + i * num_grow_ch, num_grow_ch if i < 4 else num_feat, 3, padding=1) for i in range(5)
        )
        self.act = nn.LeakyReLU(0.2, inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = [x]
        for i, conv in enumerate(self.convs):
            out = conv(torch.cat(feats, 1))
            if i < 4:
                feats.append(self.act(out))
        return x + _RESIDUAL_SCALE * out


class RRDB(nn.Module):
    """Residual in residual dense block: three dense blocks and a scaled residual."""

    def __init__(self, num_feat: int, num_grow_ch: int) -> None:
        super().__init__()
        self.rdbs = nn.Sequential(*(ResidualDenseBlock(num_feat, num_grow_ch) for _ in range(3)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + _RESIDUAL_SCALE * self.rdbs(x)


@ARCHS.register("rrdbnet")
class RRDBNet(nn.Module):
    """Grayscale ESRGAN generator.

    Parameters
    ----------
    num_feat : int
        Feature channels.
    num_block : int
        Number of RRDBs in the trunk.
    num_grow_ch : int
        Growth channels inside each dense block.
    scale : int
        Upscaling factor (2 or 4); one ×2 upsampling stage per factor of two.
    """

    def __init__(self, num_feat: int = 32, num_block: int = 6, num_grow_ch: int = 16, scale: int = 2) -> None:
        super().__init__()
        self.scale = scale
        self.conv_first = nn.Conv2d(1, num_feat, 3, padding=1)
        self.trunk = nn.Sequential(*(RRDB(num_feat, num_grow_ch) for _ in range(num_block)))
        self.conv_trunk = nn.Conv2d(num_feat, num_feat, 3, padding=1)
        self.ups = nn.ModuleList(nn.Conv2d(num_feat, num_feat, 3, padding=1) for _ in range(scale.bit_length() - 1))
        self.conv_hr = nn.Conv2d(num_feat, num_feat, 3, padding=1)
        self.conv_last = nn.Conv2d(num_feat, 1, 3, padding=1)
        self.act = nn.LeakyReLU(0.2, inplace=True)
        # 15 convolutions per RRDB plus the head and tail ones, in LR pixels.
        self.receptive_radius = 15 * num_block + 4

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feat = self.conv_first(x)
        feat = feat + self.conv_trunk(self.trunk(feat))
        for up in self.ups:
            feat = self.act(up(F.interpolate(feat, scale_factor=2, mode="nearest")))
        out = self.conv_last(self.act(self.conv_hr(feat)))
        return out + F.interpolate(x, scale_factor=self.scale, mode="bilinear", align_corners=False)
