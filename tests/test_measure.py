"""Particle measurement on analytic shapes, ISO 13322-1 exclusions, matching, bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest
from skimage.draw import disk, ellipse, polygon

from semqa.errors import InputError
from semqa.particles.measure import (
    DEFAULT_MIN_PIXELS,
    Exclusions,
    Particle,
    match_particles,
    measure_particles,
    particles_frame,
)

PX = 0.1  # µm per pixel


def _one(labels: np.ndarray) -> Particle:
    particles, excl = measure_particles(labels, PX)
    assert excl.border == 0 and excl.too_small == 0
    assert len(particles) == 1
    return particles[0]


def test_disk() -> None:
    labels = np.zeros((200, 200), dtype=np.int32)
    labels[disk((100, 100), 40)] = 1
    p = _one(labels)
    area_px = int((labels == 1).sum())
    assert p.area_um2 == pytest.approx(area_px * PX**2)
    assert p.ecd_um == pytest.approx(math.sqrt(4 * area_px / math.pi) * PX)
    assert p.ecd_um == pytest.approx(8.0, rel=0.01)  # 80 px diameter
    assert p.feret_max_um == pytest.approx(8.0, rel=0.04)
    assert p.feret_min_um == pytest.approx(8.0, rel=0.03)
    assert p.aspect_ratio == pytest.approx(1.0, abs=0.06)
    assert p.circularity == pytest.approx(1.0, abs=0.02)
    assert p.perimeter_um == pytest.approx(math.pi * 8.0, rel=0.02)
    assert p.solidity > 0.98
    # Pixel (row, col) covers [col, col + 1) × [row, row + 1): centre of pixel 100 is 100.5 px.
    assert p.centroid_x_um == pytest.approx(10.05)
    assert p.centroid_y_um == pytest.approx(10.05)


def test_ellipse() -> None:
    a, b = 60, 20  # semi-axes, px
    labels = np.zeros((200, 200), dtype=np.int32)
    labels[ellipse(100, 100, b, a)] = 1
    p = _one(labels)
    assert p.ecd_um == pytest.approx(2 * math.sqrt(a * b) * PX, rel=0.01)
    assert p.feret_max_um == pytest.approx(2 * a * PX, rel=0.03)
    assert p.feret_min_um == pytest.approx(2 * b * PX, rel=0.04)
    assert p.aspect_ratio == pytest.approx(a / b, rel=0.05)
    # Ramanujan's perimeter of an ellipse.
    h = ((a - b) / (a + b)) ** 2
    perimeter = math.pi * (a + b) * (1 + 3 * h / (10 + math.sqrt(4 - 3 * h)))
    assert p.perimeter_um == pytest.approx(perimeter * PX, rel=0.03)
    assert p.circularity == pytest.approx(4 * math.pi * (math.pi * a * b) / perimeter**2, rel=0.05)
    assert p.solidity > 0.97


def test_rotated_rectangle() -> None:
    w, h, angle = 80.0, 20.0, math.radians(30)
    c, s = math.cos(angle), math.sin(angle)
    corners = np.array([[-w / 2, -h / 2], [w / 2, -h / 2], [w / 2, h / 2], [-w / 2, h / 2]])
    xy = corners @ np.array([[c, s], [-s, c]]) + 100
    labels = np.zeros((200, 200), dtype=np.int32)
    labels[polygon(xy[:, 1], xy[:, 0], labels.shape)] = 1
    p = _one(labels)
    assert p.area_um2 == pytest.approx(w * h * PX**2, rel=0.03)
    assert p.feret_max_um == pytest.approx(math.hypot(w, h) * PX, rel=0.03)
    assert p.feret_min_um == pytest.approx(h * PX, rel=0.06)
    assert p.aspect_ratio == pytest.approx(math.hypot(w, h) / h, rel=0.07)
    assert p.circularity == pytest.approx(4 * math.pi * w * h / (2 * (w + h)) ** 2, rel=0.05)
    # scikit-image's convex image takes every pixel its hull touches: a thin rotated digital
    # rectangle reads ~0.95, not 1.
    assert p.solidity > 0.94


def test_concave_shape_solidity() -> None:
    labels = np.zeros((120, 120), dtype=np.int32)
    labels[20:100, 20:40] = 1  # an L: 80×20 plus 20×60
    labels[80:100, 40:100] = 1
    p = _one(labels)
    assert p.solidity == pytest.approx((80 * 20 + 20 * 60) / (80 * 20 + 20 * 60 + 60 * 60 / 2), rel=0.05)
    assert p.feret_min_um <= p.feret_max_um


def test_border_and_small_exclusions_counted() -> None:
    labels = np.zeros((100, 100), dtype=np.int32)
    labels[disk((50, 50), 10)] = 1  # kept
    labels[0:8, 40:50] = 2  # cut by the top border
    labels[60:70, 93:100] = 3  # cut by the right border
    labels[80, 20:23] = 4  # 3 px: too small
    labels[97:99, 2] = 5  # 2 px, inside: too small
    labels[99, 50] = 6  # 1 px on the border: border wins
    particles, excl = measure_particles(labels, PX, image_name="img-1")
    assert [p.label for p in particles] == [1]
    assert particles[0].image == "img-1"
    assert excl == Exclusions(border=3, too_small=2, min_pixels=DEFAULT_MIN_PIXELS)
    kept, excl = measure_particles(labels, PX, min_pixels=1, exclude_border=False)
    assert len(kept) == 6 and excl.border == 0 and excl.too_small == 0


def test_empty_label_image() -> None:
    particles, excl = measure_particles(np.zeros((50, 60), dtype=np.int32), PX)
    assert particles == [] and excl.border == 0 and excl.too_small == 0
    frame = particles_frame(particles)
    assert len(frame) == 0 and list(frame.columns) == list(Particle.model_fields)


def test_particles_frame() -> None:
    labels = np.zeros((100, 100), dtype=np.int32)
    labels[disk((30, 30), 10)] = 1
    labels[disk((70, 70), 15)] = 2
    frame = particles_frame(measure_particles(labels, PX)[0])
    assert list(frame.label) == [1, 2]
    assert frame.ecd_um.iloc[1] > frame.ecd_um.iloc[0]


def test_pixel_size_scales_lengths_and_areas() -> None:
    labels = np.zeros((100, 100), dtype=np.int32)
    labels[ellipse(50, 50, 10, 25)] = 1
    p1, _ = measure_particles(labels, 0.1)
    p2, _ = measure_particles(labels, 0.2)
    assert p2[0].ecd_um == pytest.approx(2 * p1[0].ecd_um)
    assert p2[0].feret_min_um == pytest.approx(2 * p1[0].feret_min_um)
    assert p2[0].area_um2 == pytest.approx(4 * p1[0].area_um2)
    assert p2[0].circularity == pytest.approx(p1[0].circularity)


@pytest.mark.parametrize(
    ("labels", "pixel_size"),
    [
        (np.zeros((10, 10, 2), dtype=np.int32), 0.1),
        (np.zeros((0, 10), dtype=np.int32), 0.1),
        (np.zeros((10, 10), dtype=float), 0.1),
        (np.full((10, 10), -1, dtype=np.int32), 0.1),
        (np.zeros((10, 10), dtype=np.int32), 0.0),
        (np.zeros((10, 10), dtype=np.int32), -0.1),
        (np.zeros((10, 10), dtype=np.int32), float("nan")),
        (np.zeros((10, 10), dtype=np.int32), float("inf")),
    ],
)
def test_bad_input(labels: np.ndarray, pixel_size: float) -> None:
    with pytest.raises(InputError):
        measure_particles(labels, pixel_size)


def test_bad_min_pixels() -> None:
    with pytest.raises(InputError):
        measure_particles(np.zeros((10, 10), dtype=np.int32), 0.1, min_pixels=0)


def test_match_particles_counts_missed_and_hallucinated() -> None:
    true = np.zeros((100, 100), dtype=np.int32)
    true[disk((25, 25), 10)] = 1
    true[disk((25, 75), 10)] = 2
    true[disk((75, 25), 10)] = 3
    pred = np.zeros_like(true)
    pred[disk((25, 26), 10)] = 7  # shifted by 1 px: matched
    pred[disk((25, 75), 4)] = 8  # too small: IoU 0.16, not matched
    pred[disk((75, 75), 8)] = 9  # nothing there: hallucinated
    result = match_particles(pred, true)
    assert (result.n_pred, result.n_true, result.matched) == (3, 3, 1)
    assert (result.missed, result.hallucinated) == (2, 2)
    assert result.recall == pytest.approx(1 / 3) and result.precision == pytest.approx(1 / 3)
    assert 0.8 < result.mean_iou < 1.0
    identical = match_particles(true, true)
    assert identical.matched == 3 and identical.mean_iou == 1.0


def test_match_particles_empty_and_errors() -> None:
    empty = np.zeros((20, 20), dtype=np.int32)
    result = match_particles(empty, empty)
    assert result.matched == 0 and result.recall == 1.0 and result.precision == 1.0 and result.mean_iou is None
    with pytest.raises(InputError):
        match_particles(empty, np.zeros((20, 21), dtype=np.int32))
    with pytest.raises(InputError):
        match_particles(empty, empty, iou_threshold=0.3)


def _assorted_masks() -> list[np.ndarray]:
    """Shapes with single pixels, one-pixel lines, holes, concavities and rotated ellipses."""
    rng = np.random.default_rng(7)
    masks = [np.ones((1, 1), bool), np.ones((1, 9), bool), np.ones((9, 1), bool), np.eye(6, dtype=bool)]
    ring = np.zeros((30, 30), bool)
    ring[disk((15, 15), 12)] = True
    ring[disk((15, 15), 6)] = False
    masks.append(ring)
    ell = np.zeros((60, 60), bool)
    ell[polygon([5, 55, 55, 30, 5], [5, 5, 55, 30, 55])] = True
    masks.append(ell)
    for _ in range(20):
        m = np.zeros((50, 50), bool)
        m[ellipse(25, 25, rng.uniform(1, 20), rng.uniform(1, 20), rotation=rng.uniform(0, np.pi), shape=m.shape)] = True
        m |= rng.random(m.shape) > 0.995
        masks.append(m)
    return masks


def test_convex_image_is_scikit_images_convex_hull_image() -> None:
    from skimage.morphology import convex_hull_image

    from semqa.particles.measure import convex_image

    for mask in _assorted_masks():
        assert np.array_equal(convex_image(mask), convex_hull_image(mask))


def test_outline_hull_is_the_hull_of_the_half_level_contour() -> None:
    from scipy.spatial import ConvexHull
    from skimage.measure import find_contours

    from semqa.particles.measure import outline_hull

    for mask in _assorted_masks():
        points = np.vstack(find_contours(np.pad(mask, 1), 0.5, fully_connected="high")) - 1.0
        expected = points[ConvexHull(points).vertices]
        got = outline_hull(mask)
        assert sorted(map(tuple, got)) == sorted(map(tuple, expected))
