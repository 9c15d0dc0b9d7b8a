"""Loss functions of GAN super-resolution training, and the registry the trainer builds them from.

No pretrained perceptual networks (VGG, LPIPS) are used: none can be downloaded here, and
for SEM images the structure terms below (SSIM, gradients) and the discriminator's own
features serve the same purpose.

The generator's objective is a weighted sum of terms registered in :data:`LOSSES` under the
field names of :class:`training.config.LossWeights`; a zero weight leaves a term out. Each
term takes one :class:`LossInputs`; terms marked ``adversarial`` need the discriminator's
outputs and run in the GAN phase only.
"""

from training.losses.adversarial import feature_matching_loss, relativistic_d_loss, relativistic_g_loss
from training.losses.pixel import charbonnier_loss, gradient_loss, pixel_loss
from training.losses.registry import LOSSES, LossInputs, LossTerm
from training.losses.ssim import ssim, ssim_loss

__all__ = [
    "LOSSES",
    "LossInputs",
    "LossTerm",
    "charbonnier_loss",
    "feature_matching_loss",
    "gradient_loss",
    "pixel_loss",
    "relativistic_d_loss",
    "relativistic_g_loss",
    "ssim",
    "ssim_loss",
]
