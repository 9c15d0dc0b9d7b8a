"""The contact cuts' null in textured particles (semqa.particles.contacts, step 4).

Scenes drawn here, not by semqa.synth: an ellipse (radii 60 × 48 px) whose yield carries a
smooth Gaussian random texture (white noise low-passed at 4 px, relative sd ``amp``), blurred
by a 0.8 px probe, Poisson noise at 300 e⁻ per unit yield. Without the part's own null the
watershed's highest paths through that texture were kept as contacts (at amp 0.05, 3–8 parts
in four frames; amp 0.1, 7–14).
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from semqa.particles.contacts import (
    _is_textured,
    long_run_variance,
    ridge_local_max,
    ridge_of,
    winsorized,
)
from semqa.particles.segmentation import segment


def _textured(seed: int, amp: float, pair: bool = False, size: int = 220) -> np.ndarray:
    """One textured ellipse, or (``pair``) two overlapping discs (radius 36 px, centres 0.4 of
    the sum of radii apart, yields 0.5 and 0.6, the upper one's outline brightened by 40 %
    within 1.5 px: the SE edge effect), both carrying the same texture."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(float)
    c = size / 2
    texture = ndimage.gaussian_filter(rng.standard_normal((size, size)), 4.0)
    texture /= texture.std()
    img = np.full((size, size), 0.2)
    if pair:
        r, d = 36.0, 0.4 * 72.0
        img[np.hypot(yy - c, xx - (c - d / 2)) <= r] = 0.5
        rb = np.hypot(yy - c, xx - (c + d / 2))
        on_b = rb <= r
        img[on_b] = 0.6 * (1.0 + 0.4 * np.exp(-(r - rb[on_b]) / 1.5))
        on = img > 0.2
    else:
        on = ((yy - c) / 60.0) ** 2 + ((xx - c) / 48.0) ** 2 <= 1
        img[on] = 0.6
    img = np.where(on, img * (1.0 + amp * texture), img)
    img = ndimage.gaussian_filter(img, 0.8)
    return rng.poisson(img * 300.0) / 300.0


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
@pytest.mark.parametrize("amp", [0.05, 0.1])
def test_a_textured_convex_particle_stays_whole(seed: int, amp: float) -> None:
    assert segment(_textured(seed, amp)).max() == 1


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_overlapping_textured_particles_are_still_split_at_their_contact(seed: int) -> None:
    # The part's own null is wider than the substrate's, but the contact edge stands out of it.
    labels = segment(_textured(seed, 0.05, pair=True))
    assert labels.max() == 2
    cols = [np.nonzero(labels == k)[1].mean() for k in (1, 2)]
    assert abs(cols[0] - cols[1]) > 20


def test_texture_test_tells_textured_interior_from_noise() -> None:
    # The same statistic inside a flat disc (noise only) and a textured one, against the
    # substrate of the same frame: only the textured interior is flagged.
    sigma = 1.0
    results = {}
    for amp in (0.0, 0.1):
        image = _textured(5, amp)
        grad = ndimage.gaussian_gradient_magnitude((2.0 * np.sqrt(image * 300.0 + 3.0 / 8.0)), sigma)
        yy, xx = np.mgrid[0 : image.shape[0], 0 : image.shape[1]]
        r = np.hypot((yy - 110) / 60.0, (xx - 110) / 48.0)
        interior, substrate = r < 0.8, r > 1.3
        lrv, _ = long_run_variance(ridge_local_max(ridge_of(grad, sigma)), substrate, sigma)
        results[amp] = _is_textured(ridge_local_max(ridge_of(grad, sigma)), interior, lrv, sigma, 0.05)
    assert results == {0.0: False, 0.1: True}


def test_winsorized_clips_only_the_far_tail() -> None:
    rng = np.random.default_rng(0)
    values = rng.rayleigh(1.0, (200, 200))
    values[100, :] = 40.0  # a contact rim among the texture
    where = np.ones(values.shape, dtype=bool)
    clipped = winsorized(values, where)
    assert clipped.max() < 6.0
    # The texture's own values are left alone but for its far tail (< 1 % of them).
    assert np.mean(clipped[:100] != values[:100]) < 0.01


def _overlapping_pair(seed: int, levels: tuple[float, float, float], r_top: float, separation: float) -> tuple[np.ndarray, np.ndarray]:
    """A disc of radius 45 px and a disc of radius ``r_top`` lying on it, centres ``separation``
    × the sum of the radii apart; ``levels``: substrate, lower and upper particle yields; 300 e⁻/px."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:256, :256]
    truth = np.zeros((256, 256), np.int32)
    truth[(yy - 128) ** 2 + (xx - 90) ** 2 <= 45**2] = 1
    truth[(yy - 128 - rng.uniform(-3, 3)) ** 2 + (xx - 90 - separation * (45 + r_top)) ** 2 <= r_top**2] = 2
    clean = ndimage.gaussian_filter(np.asarray(levels)[truth], 0.8)
    return (rng.poisson(clean * 300.0) / 300.0).astype(np.float32), truth


@pytest.mark.parametrize(
    "seed, levels, r_top, separation",
    [(0, (0.6, 0.35, 0.2), 38, 0.75), (1, (0.25, 0.5, 0.7), 30, 0.75), (0, (0.25, 0.5, 0.7), 30, 0.8), (0, (0.25, 0.5, 0.7), 20, 0.85)],
)
def test_the_lens_of_an_overlap_stays_with_its_particle(seed, levels, r_top, separation) -> None:
    """The distance-map split cuts an overlapping pair along the chord of its neck; the upper
    particle's outline is an arc beyond it, so the lens between falls to the lower particle's part,
    and the contact cut takes it off there as a third particle (each of these frames gave three
    objects before the lens was given back). Two particles, each matched with IoU > 0.9."""
    image, truth = _overlapping_pair(seed, levels, r_top, separation)
    labels = segment(image)
    assert labels.max() == 2
    for t in (1, 2):
        best = np.bincount(labels[truth == t], minlength=3)[1:].argmax() + 1
        inter = np.sum((labels == best) & (truth == t))
        assert inter / np.sum((labels == best) | (truth == t)) > 0.9
