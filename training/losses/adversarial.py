"""Relativistic average GAN losses and discriminator feature matching.

Relativistic average discriminator (Jolicoeur-Martineau, ICLR 2019), as used by ESRGAN
(Wang et al., ECCVW 2018, eq. 1–2): the discriminator estimates whether a real image is
more realistic than the average fake one, and vice versa; the generator gets gradients from
both real and fake logits. With a U-Net discriminator the averages are over the batch, per
pixel logits are kept (Real-ESRGAN).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _bce(logits: torch.Tensor, target: float) -> torch.Tensor:
    return F.binary_cross_entropy_with_logits(logits, torch.full_like(logits, target))


def relativistic_d_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """Discriminator loss: real should look more real than the average fake, fake less real."""
    return 0.5 * (
        _bce(real_logits - fake_logits.mean(0, keepdim=True), 1.0)
        + _bce(fake_logits - real_logits.mean(0, keepdim=True), 0.0)
    )


def relativistic_g_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """Generator loss: the symmetric objective with the labels swapped."""
    return 0.5 * (
        _bce(real_logits - fake_logits.mean(0, keepdim=True), 0.0)
        + _bce(fake_logits - real_logits.mean(0, keepdim=True), 1.0)
    )


def feature_matching_loss(real_features: list[torch.Tensor], fake_features: list[torch.Tensor]) -> torch.Tensor:
    """Mean L1 distance of discriminator features of HR and SR images (pix2pixHD, Wang et al., CVPR 2018).

    The real features are detached: the term moves the generator, not the discriminator.
    """
    terms = [F.l1_loss(fake, real.detach()) for real, fake in zip(real_features, fake_features, strict=True)]
    return torch.stack(terms).mean()
