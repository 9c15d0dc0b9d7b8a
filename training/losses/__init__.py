"""Loss functions of GAN super-resolution training.

No pretrained perceptual networks (VGG, LPIPS) are used: none can be downloaded here, and
for SEM images the structure terms below (SSIM, gradients) and the discriminator's own
features serve the same purpose.
"""

from training.losses.adversarial import feature_matching_loss, relativistic_d_loss, relativistic_g_loss
from training.losses.pixel import charbonnier_loss, gradient_loss, pixel_loss
from training.losses.ssim import ssim, ssim_loss

__all__ = [
    "charbonnier_loss",
    "feature_matching_loss",
    "gradient_loss",
    "pixel_loss",
    "relativistic_d_loss",
    "relativistic_g_loss",
    "ssim",
    "ssim_loss",
]
