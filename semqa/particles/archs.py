"""The learned segmenter's network: a small U-Net and the config that rebuilds it.

Ronneberger, Fischer & Brox, "U-Net", MICCAI 2015, as used for SEM particles by Rühle et al.
(*Sci. Rep.* 11, 2021). Three output maps per pixel: foreground logit, boundary logit (the
one-pixel-wide contact lines that separate touching particles) and the distance to the
particle's edge normalised by the particle's largest such distance (0 at the edge, 1 at the
centre). :mod:`semqa.particles.learned` decodes them by marker watershed.

The config is stored as JSON beside the safetensors weights, as for the generator
(:mod:`semqa.sr.archs`), so a model loads by rebuilding the network and filling in tensors.
"""

from __future__ import annotations

import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator
from torch import nn

#: Output channels: foreground logit, boundary logit, normalised distance.
FOREGROUND, BOUNDARY, DISTANCE = 0, 1, 2


class SegmenterConfig(BaseModel):
    """Architecture and working scale of a learned segmenter."""

    model_config = ConfigDict(extra="forbid")

    arch: str = Field("unet", pattern="^unet$")
    num_feat: int = Field(
        8, ge=4, le=128,
        description="channels of the first level (doubled per level); 8 keeps a 1024 × 768 frame under 1 s on 2 CPU cores",
    )
    depth: int = Field(3, ge=1, le=5, description="down-sampling steps (the receptive field grows as 2^depth)")
    working_diameter_px: float = Field(
        24.0, ge=8, le=60,
        description="images whose typical particle ECD is smaller are upsampled so it is this many pixels before the network sees them",
    )
    working_diameter_max_px: float | None = Field(
        None, ge=8, le=512,
        description=(
            "images whose typical ECD is larger are downsampled to this; between the two the image is used as it is "
            "(a model trained across that range). None: one working size, working_diameter_px"
        ),
    )

    @model_validator(mode="after")
    def _range(self) -> SegmenterConfig:
        if self.working_diameter_max_px is not None and self.working_diameter_max_px < self.working_diameter_px:
            raise ValueError(f"working_diameter_max_px {self.working_diameter_max_px} < working_diameter_px {self.working_diameter_px}")
        return self

    def working_range(self) -> tuple[float, float]:
        """Smallest and largest typical particle ECD the network is run at, px."""
        return self.working_diameter_px, self.working_diameter_max_px or self.working_diameter_px


def _block(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, padding=1), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True),
        nn.Conv2d(c_out, c_out, 3, padding=1), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True),
    )


class UNet(nn.Module):
    """Grayscale U-Net with ``depth`` pooling steps and three output maps.

    Input height and width must be multiples of ``2**depth`` (the caller pads).
    """

    def __init__(self, num_feat: int = 8, depth: int = 3) -> None:
        super().__init__()
        chans = [num_feat * 2**i for i in range(depth + 1)]
        self.down = nn.ModuleList([_block(1, chans[0])] + [_block(chans[i], chans[i + 1]) for i in range(depth)])
        self.up = nn.ModuleList([nn.ConvTranspose2d(chans[i + 1], chans[i], 2, stride=2) for i in reversed(range(depth))])
        self.merge = nn.ModuleList([_block(2 * chans[i], chans[i]) for i in reversed(range(depth))])
        self.head = nn.Conv2d(chans[0], 3, 1)
        self.multiple = 2**depth

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for i, block in enumerate(self.down):
            x = block(x if i == 0 else nn.functional.max_pool2d(x, 2))
            skips.append(x)
        x = skips.pop()
        for up, merge in zip(self.up, self.merge):
            x = merge(torch.cat([up(x), skips.pop()], dim=1))
        return self.head(x)


def build_segmenter(config: SegmenterConfig) -> UNet:
    """A freshly initialised network for ``config``."""
    return UNet(num_feat=config.num_feat, depth=config.depth)
