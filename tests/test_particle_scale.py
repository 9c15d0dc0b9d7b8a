"""The particle scale of a foreground mask (semqa.particles.scale): a particle's ECD, also in clusters."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import ndimage
from skimage.draw import disk, ellipse, polygon

from semqa.particles.scale import (
    SINGLE_RATIO,
    _covered_share,
    _moment_minor_axis,
    particle_scale,
)


def _ecd(mask: np.ndarray) -> float:
    return 2.0 * math.sqrt(mask.sum() / math.pi)


def _median_thickness_over_minor(mask: np.ndarray) -> float:
    """Area-weighted median local thickness of one component over its moment minor axis."""
    lab, n = ndimage.label(mask)
    areas = np.bincount(lab.ravel()).astype(float)
    minor = _moment_minor_axis(lab, n, areas)[1]
    dist = ndimage.distance_transform_edt(mask)
    ts = np.linspace(1.0, 1.2 * minor, 240)
    shares = np.array([_covered_share(dist, lab, areas, np.array([0.0, t]))[1] for t in ts])
    return float(np.interp(-0.5, -shares, ts)) / minor


def _ellipse_mask(aspect: float, b: float = 40.0) -> np.ndarray:
    a = aspect * b
    mask = np.zeros((int(2 * a) + 20, int(2 * b) + 20), bool)
    rr, cc = ellipse(mask.shape[0] / 2, mask.shape[1] / 2, a, b, shape=mask.shape)
    mask[rr, cc] = True
    return mask


@pytest.mark.parametrize(("aspect", "tolerance"), [(1.0, 0.015), (1.5, 0.015), (2.5, 0.015), (3.5, 0.03)])
def test_median_thickness_of_an_ellipse_is_its_minor_axis(aspect: float, tolerance: float) -> None:
    """The module docstring's figures: T = 2b within 1.5 % up to aspect 2.5, 3 % at 3.5 (b = 40 px)."""
    assert abs(_median_thickness_over_minor(_ellipse_mask(aspect)) - 1.0) <= tolerance


def test_convex_shapes_pass_the_single_particle_ratio_and_clusters_do_not() -> None:
    size = 340
    triangle = np.zeros((size, size), bool)
    rr, cc = polygon(np.array([20, 20, 280]), np.array([20, 320, 170]), triangle.shape)
    triangle[rr, cc] = True
    square = np.zeros((size, size), bool)
    square[40:290, 40:290] = True
    assert _median_thickness_over_minor(triangle) >= SINGLE_RATIO
    assert _median_thickness_over_minor(square) >= SINGLE_RATIO
    three = np.zeros((size, size), bool)
    for c in [(100, 100), (100, 160), (152, 130)]:
        rr, cc = disk(c, 33, shape=three.shape)
        three[rr, cc] = True
    assert _median_thickness_over_minor(three) < SINGLE_RATIO


def test_isolated_particles_keep_the_area_weighted_median_ecd() -> None:
    """A frame of separate convex particles (discs, ellipses up to aspect 3, a square, a triangle)."""
    mask = np.zeros((400, 400), bool)
    shapes = []
    for (r, c), (a, b) in zip([(40, 40), (40, 140), (40, 260), (150, 60), (150, 200), (260, 60)], [(12, 12), (20, 20), (30, 10), (24, 12), (16, 8), (9, 9)]):
        one = np.zeros_like(mask)
        rr, cc = ellipse(r, c, a, b, shape=mask.shape, rotation=0.4)
        one[rr, cc] = True
        shapes.append(one)
    square = np.zeros_like(mask)
    square[230:290, 180:240] = True
    triangle = np.zeros_like(mask)
    rr, cc = polygon(np.array([300, 300, 380]), np.array([280, 380, 330]), mask.shape)
    triangle[rr, cc] = True
    shapes += [square, triangle]
    for one in shapes:
        mask |= one
    areas = np.sort([one.sum() for one in shapes]).astype(float)
    cum = np.cumsum(areas)
    expected = 2.0 * math.sqrt(areas[np.searchsorted(cum, 0.5 * cum[-1])] / math.pi)
    assert particle_scale(mask) == pytest.approx(expected, rel=1e-9)


def test_clusters_are_read_at_their_particles_not_their_outline() -> None:
    """Compact clusters of 4–7 overlapping discs of diameter 24 px: the clusters' ECD is 2–2.6
    times the particles', the particle scale within 15 % of 24 px."""
    rng = np.random.default_rng(3)
    mask = np.zeros((480, 480), bool)
    for cy in range(60, 480, 120):
        for cx in range(60, 480, 120):
            centres = [(cy, cx)]
            while len(centres) < rng.integers(4, 8):
                y, x = centres[rng.integers(len(centres))]
                angle = rng.uniform(0, 2 * np.pi)
                new = (y + 20 * np.sin(angle), x + 20 * np.cos(angle))
                if all(math.dist(new, c) >= 18 for c in centres):
                    centres.append(new)
            for c in centres:
                rr, cc = disk(c, 12, shape=mask.shape)
                mask[rr, cc] = True
    lab, n = ndimage.label(mask)
    cluster_ecd = np.median([_ecd(lab == i) for i in range(1, n + 1)])
    assert cluster_ecd > 1.9 * 24
    assert particle_scale(mask) == pytest.approx(24.0, rel=0.15)


def test_small_components_keep_their_ecd_below_the_resolved_thickness() -> None:
    """Components a few pixels wide cannot be resolved into particles: their ECD is kept."""
    mask = np.zeros((60, 60), bool)
    mask[10:13, 10:16] = True  # 3 × 6 px
    mask[30:34, 30:34] = True
    # The area-weighted median of the two components is the larger one (18 of 34 px).
    assert particle_scale(mask) == pytest.approx(_ecd(mask[5:15, 5:20]), rel=1e-9)


def test_a_ring_of_touching_particles_is_not_read_as_the_area_it_encloses() -> None:
    """Holes are filled for the thickness only: a closed ring of discs around substrate keeps
    the ECD of its own pixels (not of the filled disc), a rimmed particle (a ring) its disc's."""
    mask = np.zeros((200, 200), bool)
    for angle in np.linspace(0, 2 * np.pi, 16, endpoint=False):
        rr, cc = disk((100 + 60 * np.sin(angle), 100 + 60 * np.cos(angle)), 13, shape=mask.shape)
        mask[rr, cc] = True
    assert particle_scale(mask) <= _ecd(mask) + 1e-9 < _ecd(ndimage.binary_fill_holes(mask))
    rim = np.zeros((100, 100), bool)
    rr, cc = disk((50, 50), 30, shape=rim.shape)
    rim[rr, cc] = True
    rr, cc = disk((50, 50), 24, shape=rim.shape)
    rim[rr, cc] = False
    assert particle_scale(rim) == pytest.approx(_ecd(rim), rel=1e-9)


def test_empty_and_speck_masks_have_no_scale() -> None:
    assert particle_scale(np.zeros((32, 32), bool)) is None
    specks = np.zeros((32, 32), bool)
    specks[5, 5] = specks[20, 20:22] = True
    assert particle_scale(specks) is None
