"""Generator loss terms by name (:class:`semqa.components.Registry`), one signature for all."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from semqa.components import Registry
from training.losses.adversarial import feature_matching_loss, relativistic_g_loss
from training.losses.pixel import gradient_loss, pixel_loss
from training.losses.ssim import ssim_loss


@dataclass(frozen=True)
class LossInputs:
    """What a generator loss term may read: the SR batch, its HR target, the discriminator's view."""

    fake: torch.Tensor
    hr: torch.Tensor
    pixel_kind: str = "charbonnier"
    real_logits: torch.Tensor | None = None
    fake_logits: torch.Tensor | None = None
    real_features: list[torch.Tensor] | None = None
    fake_features: list[torch.Tensor] | None = None


@dataclass(frozen=True)
class LossTerm:
    """A registered term: its function and whether it needs the discriminator (GAN phase)."""

    fn: object
    adversarial: bool = False

    def __call__(self, x: LossInputs) -> torch.Tensor:
        return self.fn(x)  # type: ignore[operator]


#: Generator loss terms, named as the fields of :class:`training.config.LossWeights`.
LOSSES = Registry("loss")
LOSSES.register("pixel")(LossTerm(lambda x: pixel_loss(x.fake, x.hr, x.pixel_kind)))
LOSSES.register("ssim")(LossTerm(lambda x: ssim_loss(x.fake, x.hr)))
LOSSES.register("gradient")(LossTerm(lambda x: gradient_loss(x.fake, x.hr)))
LOSSES.register("adversarial")(LossTerm(lambda x: relativistic_g_loss(x.real_logits, x.fake_logits), adversarial=True))
LOSSES.register("feature_matching")(
    LossTerm(lambda x: feature_matching_loss(x.real_features, x.fake_features), adversarial=True)
)
