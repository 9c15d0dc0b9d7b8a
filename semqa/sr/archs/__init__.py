"""Super-resolution network architectures and the registry that builds them from config.

A generator is described completely by a :class:`GeneratorConfig` whose ``arch`` (alias
``type``, as in BasicSR's ``network_g: {type: ...}``) names a class in :data:`ARCHS`; the
config is stored as JSON beside the weights (safetensors), so a model loads by rebuilding
the architecture from ``semqa`` and filling in tensors — never by unpickling code.
"""

from __future__ import annotations

from typing import Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field
from torch import nn

from semqa.sr.archs.registry import ARCHS
from semqa.sr.archs.discriminator import UNetDiscriminatorSN
from semqa.sr.archs.rrdbnet import RRDBNet
from semqa.sr.archs.srvgg import SRVGGNetCompact

__all__ = [
    "ARCHS",
    "DiscriminatorConfig",
    "GeneratorConfig",
    "RRDBNet",
    "SRVGGNetCompact",
    "UNetDiscriminatorSN",
    "build_discriminator",
    "build_generator",
]


class GeneratorConfig(BaseModel):
    """Architecture of a grayscale super-resolution generator.

    ``srvgg`` (default) is the compact CPU-friendly network; ``rrdbnet`` the stronger
    ESRGAN generator meant for GPU training.
    """

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    arch: Literal["srvgg", "rrdbnet"] = Field(
        "srvgg", validation_alias=AliasChoices("arch", "type"), description="registered architecture (semqa.sr.archs.ARCHS)"
    )
    scale: Literal[2, 4] = Field(4, description="upscaling factor; 4 matches the default LR fast scan")
    num_feat: int = Field(32, ge=4, le=256, description="feature channels")
    num_conv: int = Field(8, ge=1, le=64, description="srvgg: 3×3 body convolutions at LR resolution")
    num_block: int = Field(6, ge=1, le=64, description="rrdbnet: residual-in-residual dense blocks")
    num_grow_ch: int = Field(16, ge=4, le=128, description="rrdbnet: growth channels of a dense block")


class DiscriminatorConfig(BaseModel):
    """Architecture of the U-Net discriminator with spectral normalization."""

    model_config = ConfigDict(extra="forbid")

    num_feat: int = Field(32, ge=4, le=256, description="channels of the first level (doubled per level)")
    skip_connection: bool = True


def build_generator(config: GeneratorConfig) -> nn.Module:
    """A freshly initialised generator for ``config`` (1 channel in, 1 channel out)."""
    return ARCHS.build(config.arch, config.model_dump(exclude={"arch"}))


def build_discriminator(config: DiscriminatorConfig) -> nn.Module:
    """A freshly initialised U-Net discriminator with spectral normalization."""
    return UNetDiscriminatorSN(num_feat=config.num_feat, skip_connection=config.skip_connection)
