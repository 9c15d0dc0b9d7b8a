"""The first look at a frame of unknown particle size (semqa.particles.look) and the particle-size
estimate the learned segmenter resamples by: dark particles, uneven lighting, shot noise.

The frames are drawn here (discs of one diameter on a flat or lit substrate, Poisson counts),
apart from semqa.synth's renderers, so the expected size is the discs' diameter.
"""

from __future__ import annotations

import numpy as np
import pytest
from skimage.draw import disk

from semqa.particles.look import denoise_sigma, particle_mask, particle_phase, polynomial_surface
from semqa.particles.segmentation import estimate_particle_diameter

DIAMETER = 20.0


def _frame(particle: float, substrate: float, gradient: float, dose: float, seed: int = 0, size: int = 384) -> np.ndarray:
    """Discs of DIAMETER px on a substrate, at least a diameter apart, lit by a multiplicative
    linear gradient (1 ± gradient/2 corner to corner), Poisson counts at ``dose`` e⁻/px."""
    rng = np.random.default_rng(seed)
    level = np.full((size, size), substrate)
    centres: list[tuple[float, float]] = []
    for _ in range(4000):
        c = rng.uniform(DIAMETER, size - DIAMETER, 2)
        if all(np.hypot(*(c - np.array(o))) > 2 * DIAMETER for o in centres):
            centres.append(tuple(c))
            level[disk(tuple(c), DIAMETER / 2, shape=level.shape)] = particle
        if len(centres) >= 60:
            break
    y, x = np.mgrid[0:size, 0:size] / size
    lit = level * (1.0 + gradient * (0.5 * (x + y) - 0.5))
    return (rng.poisson(lit * dose) / dose).astype(np.float32)


@pytest.mark.parametrize(
    "particle, substrate, gradient",
    [(0.6, 0.3, 0.0), (0.3, 0.6, 0.0), (0.6, 0.4, 0.8), (0.25, 0.5, 0.8)],
    ids=["bright", "dark", "bright-lit", "dark-lit"],
)
@pytest.mark.parametrize("dose", [20.0, 300.0])
def test_the_estimate_reads_the_discs_whatever_their_polarity_lighting_and_dose(particle, substrate, gradient, dose):
    estimate = estimate_particle_diameter(_frame(particle, substrate, gradient, dose))
    assert estimate is not None and abs(estimate / DIAMETER - 1.0) < 0.1, estimate


def test_dark_particles_are_the_particle_phase_not_the_substrate():
    mask, factor = particle_mask(_frame(0.3, 0.6, 0.0, 300.0), contrast_to_noise=8.0)
    assert factor == 2 and mask is not None
    assert 0.05 < mask.mean() < 0.25  # 60 discs of 20 px cover 13 % of the field; the substrate 87 %


def test_particle_phase_is_the_phase_that_is_not_one_connected_region():
    upper = np.zeros((40, 40), bool)
    for r in range(5, 40, 10):
        for c in range(5, 40, 10):
            upper[r - 2 : r + 3, c - 2 : c + 3] = True
    np.testing.assert_array_equal(particle_phase(upper), upper)
    np.testing.assert_array_equal(particle_phase(~upper), upper)


def test_polynomial_surface_recovers_a_quadratic_lighting_off_the_masked_pixels():
    y, x = np.mgrid[0:64, 0:96] / np.array([64.0, 96.0])[:, None, None]
    truth = 1.0 + 0.3 * x - 0.2 * y + 0.4 * (x - 0.5) ** 2
    image = truth.copy()
    hidden = np.zeros(image.shape, bool)
    hidden[10:30, 20:50] = True
    image[hidden] = 5.0  # particles: left out of the fit
    np.testing.assert_allclose(polynomial_surface(image, ~hidden), truth, atol=1e-9)


def test_denoise_sigma_follows_the_noise():
    clean = _frame(0.6, 0.3, 0.0, 1e6)
    assert denoise_sigma(clean, 8.0) == 0.0  # contrast ≫ noise: no smoothing
    noisy = _frame(0.6, 0.3, 0.0, 5.0)
    assert 0.5 <= denoise_sigma(noisy, 8.0) <= 2.0
