"""U-Net discriminator with spectral normalization (Real-ESRGAN).

Wang et al., Real-ESRGAN (ICCVW 2021), §3.3: a U-Net gives per-pixel realness feedback,
and spectral normalization (Miyato et al., ICLR 2018) stabilises its training. The decoder
features are returned as well, for the feature-matching loss (Wang et al., pix2pixHD 2018).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm


class UNetDiscriminatorSN(nn.Module):
    """Grayscale U-Net discriminator; input sides must be multiples of 8.

    Parameters
    ----------
    num_feat : int
        Channels at full resolution; doubled at each of the three downsampling levels.
    skip_connection : bool
        Add encoder features to the decoder (U-Net skips).
    """

    def __init__(self, num_feat: int = 32, skip_connection: bool = True) -> None:
        super().__init__()
        self.skip_connection = skip_connection
        nf = num_feat
        self.conv0 = nn.Conv2d(1, nf, 3, padding=1)
        self.conv1 = spectral_norm(nn.Conv2d(nf, nf * 2, 4, 2, 1, bias=False))
        self.conv2 = spectral_norm(nn.Conv2d(nf * 2, nf * 4, 4, 2, 1, bias=False))
        self.conv3 = spectral_norm(nn.Conv2d(nf * 4, nf * 8, 4, 2, 1, bias=False))
        self.conv4 = spectral_norm(nn.Conv2d(nf * 8, nf * 4, 3, padding=1, bias=False))
        self.conv5 = spectral_norm(nn.Conv2d(nf * 4, nf * 2, 3, padding=1, bias=False))
        self.conv6 = spectral_norm(nn.Conv2d(nf * 2, nf, 3, padding=1, bias=False))
        self.conv7 = spectral_norm(nn.Conv2d(nf, nf, 3, padding=1, bias=False))
        self.conv8 = spectral_norm(nn.Conv2d(nf, nf, 3, padding=1, bias=False))
        self.conv9 = nn.Conv2d(nf, 1, 3, padding=1)

    def forward(self, x: torch.Tensor, return_features: bool = False):
        """Per-pixel realness logits ``(N, 1, H, W)``, and the decoder features if asked."""
        act = lambda t: F.leaky_relu(t, 0.2)  # noqa: E731
        x0 = act(self.conv0(x))
        x1 = act(self.conv1(x0))
        x2 = act(self.conv2(x1))
        x3 = act(self.conv3(x2))
        up = lambda t: F.interpolate(t, scale_factor=2, mode="bilinear", align_corners=False)  # noqa: E731
        x4 = act(self.conv4(up(x3)))
        if self.skip_connection:
            x4 = x4 + x2
        x5 = act(self.conv5(up(x4)))
        if self.skip_connection:
            x5 = x5 + x1
        x6 = act(self.conv6(up(x5)))
        if self.skip_connection:
            x6 = x6 + x0
        out = act(self.conv7(x6))
        out = act(self.conv8(out))
        logits = self.conv9(out)
        if return_features:
            return logits, [x4, x5, x6]
        return logits
