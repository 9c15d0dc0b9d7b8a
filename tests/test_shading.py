"""Directional SE shading (semqa.particles.shading): the detector direction, and ridge cuts merged.

Scenes drawn here, not by semqa.synth: particles as height fields on a substrate at yield 0.25 —
pyramids (the distance map of a rotated square or hexagon: planar faces meeting in ridges, as a
crystal's; or of a square with edges along and across ``w``) or domes (spherical caps) — shaded by their slope towards a detector direction ``w``
(yield ``0.55 · (1 + 0.35 · slope along w)``), blurred by a 0.8 px probe, Poisson noise at
300 e⁻ per unit yield. Flat scenes: the same outlines at yields drawn with a 10 % sd, no slope.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import ndimage

import semqa.particles.segmentation as segmentation
from semqa.particles.segmentation import segment
from semqa.particles.shading import frame_shading, merge_ridges

SIZE = 640
GRID = 4


def _polygon(yy: np.ndarray, xx: np.ndarray, cy: float, cx: float, radius: float, sides: int, turn: float) -> np.ndarray:
    """Mask of a regular polygon (circumradius ``radius``), rotated by ``turn`` radians."""
    inside = np.ones(yy.shape, dtype=bool)
    apothem = radius * math.cos(math.pi / sides)
    for k in range(sides):
        a = turn + 2 * math.pi * (k + 0.5) / sides
        inside &= (xx - cx) * math.cos(a) + (yy - cy) * math.sin(a) <= apothem
    return inside


def _scene(seed: int, direction_deg: float, kind: str) -> tuple[np.ndarray, np.ndarray]:
    """``(image, true labels)``: 4 × 4 particles of radius 40–55 px on a grid; of the domes,
    particle 6 touches particle 5, its centre along the image's x axis at 0.9 of the sum of their
    radii (6 lies on top)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:SIZE, 0:SIZE].astype(float)
    height = np.zeros((SIZE, SIZE))
    labels = np.zeros((SIZE, SIZE), dtype=np.int32)
    albedo = np.zeros((SIZE, SIZE))
    for i in range(GRID):
        for j in range(GRID):
            cy, cx = 80 + 160 * i + rng.uniform(-15, 15), 80 + 160 * j + rng.uniform(-15, 15)
            r = rng.uniform(40, 55)
            if kind == "dome" and (i, j) == (1, 1):
                cy, cx = first[0], first[1] + 0.9 * (first[2] + r)
            if (i, j) == (1, 0):
                first = (cy, cx, r)
            if kind == "dome":
                d2 = (yy - cy) ** 2 + (xx - cx) ** 2
                own = d2 <= r * r
                h = np.where(own, np.sqrt(np.maximum(r * r - d2, 0.0)), 0.0)
            elif kind == "square":  # a square pyramid, edges along and across w (± 10°): its ridges face the detector
                own = _polygon(yy, xx, cy, cx, r, 4, math.radians(direction_deg) - math.pi / 4 + rng.uniform(-0.17, 0.17))
                h = np.where(own, ndimage.distance_transform_edt(own), 0.0)
            else:
                own = _polygon(yy, xx, cy, cx, r, int(rng.choice([4, 6])), rng.uniform(0, math.pi))
                h = np.where(own, ndimage.distance_transform_edt(own), 0.0)
            labels[own] = GRID * i + j + 1
            height = np.where(own, h, height)
            albedo[own] = 0.55 * (1.0 + 0.1 * rng.normal()) if kind == "flat" else 0.55
    gy, gx = np.gradient(height)
    w = np.radians(direction_deg)
    slope = np.clip(-(gx * math.cos(w) + gy * math.sin(w)), -1.0, 1.0)
    if kind == "flat":
        slope[:] = 0.0
    yield_ = np.where(labels > 0, albedo * (1.0 + 0.35 * slope), 0.25)
    if kind == "flat":  # an SE rim, the same on every side of a particle
        yield_ += 0.2 * (ndimage.distance_transform_edt(labels > 0) == 1)
    image = rng.poisson(ndimage.gaussian_filter(yield_, 0.8) * 300.0) / 300.0
    return image.astype(np.float32), labels


def _stabilised(image: np.ndarray) -> np.ndarray:
    return 2.0 * np.sqrt(image * 300.0 + 0.375)  # Anscombe: unit noise sd


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("direction_deg", [30.0, 200.0])
@pytest.mark.parametrize("kind", ["pyramid", "dome"])
def test_frame_shading_reads_the_detector_direction(seed: int, direction_deg: float, kind: str) -> None:
    # Yield rises with the slope down towards -w, so across a convex particle it rises along w.
    image, labels = _scene(seed, direction_deg, kind)
    shading = frame_shading(labels > 0, _stabilised(image), 3.0, 0.05)
    assert shading is not None
    expected = np.radians(direction_deg)
    angle = math.atan2(shading.u[1], shading.u[0])
    assert abs(math.remainder(angle - expected, 2 * math.pi)) < math.radians(10)
    assert shading.amplitude > 0


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_flat_rim_lit_particles_have_no_direction(seed: int) -> None:
    image, labels = _scene(seed, 30.0, "flat")
    assert frame_shading(labels > 0, _stabilised(image), 3.0, 0.05) is None


def _faces(labels: np.ndarray, k: int, direction_deg: float = 30.0) -> np.ndarray:
    """Square pyramid ``k`` (the "square" kind) labelled by its four faces: the triangles
    between its diagonals, which run at 45° to ``w``."""
    yy, xx = np.nonzero(labels == k)
    angle = np.arctan2(yy - yy.mean(), xx - xx.mean()) - np.radians(direction_deg) - math.pi / 4
    parts = np.zeros(labels.shape, dtype=np.int32)
    parts[yy, xx] = 1 + (np.floor(np.mod(angle, 2 * math.pi) / (math.pi / 2)).astype(int) % 4)
    return parts


def test_a_cut_along_a_ridge_is_merged_and_a_contact_is_not() -> None:
    direction = 30.0
    image, labels = _scene(0, direction, "square")
    z = _stabilised(image)
    shading = frame_shading(labels > 0, z, 3.0, 0.05)
    assert shading is not None
    # A square pyramid cut into its four faces: each edge between them is a ridge facing the detector at 45°.
    assert merge_ridges(_faces(labels, 6), z, shading, 5.5, 1.0, 0.05).max() == 1
    # Two touching domes, cut where they meet: a valley.
    image, labels = _scene(0, direction, "dome")
    z = _stabilised(image)
    shading = frame_shading(labels > 0, z, 3.0, 0.05)
    assert shading is not None
    pair = np.where(np.isin(labels, [5, 6]), labels - 4, 0)
    assert merge_ridges(pair, z, shading, 5.5, 1.0, 0.05).max() == 2


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_lit_crystals_are_not_cut_along_their_ridges(seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    # Square pyramids with edges along and across w: every ridge faces the detector at 45°
    # (a ridge lit edge-on shows no tilt step and is not judged).
    image, labels = _scene(seed, 30.0, "square")

    def whole(detected: np.ndarray) -> int:
        """True particles whose detected pixels lie (≥ 95 %) in one detected object."""
        count = 0
        for k in range(1, GRID * GRID + 1):
            ids, n = np.unique(detected[(labels == k) & (detected > 0)], return_counts=True)
            count += bool(n.size) and n.max() >= 0.95 * n.sum()
        return count

    assert whole(segment(image)) >= 14  # 16 of 16 in seeds 0–3 and 5, 15 in seed 4
    # Without the merge, the contact cuts take the ridges for contacts (0 of 16 whole).
    monkeypatch.setattr(segmentation, "_merge_ridge_cuts", lambda labels, *args: labels)
    assert whole(segment(image)) <= 2


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_touching_lit_domes_stay_apart(seed: int) -> None:
    image, labels = _scene(seed, 30.0, "dome")
    detected = segment(image)
    a = np.bincount(detected[labels == 5]).argmax()
    b = np.bincount(detected[labels == 6]).argmax()
    assert a and b and a != b


@pytest.mark.parametrize("seed", [0, 1])
def test_faces_turned_away_from_the_detector_are_part_of_the_particle(seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    # The square pyramids' face turned away from w is dimmer than half their level.
    image, labels = _scene(seed, 30.0, "square")

    def median_iou(detected: np.ndarray) -> float:
        ious = []
        for k in range(1, GRID * GRID + 1):
            own = labels == k
            ids, n = np.unique(detected[own], return_counts=True)
            best = ids[np.argmax(n)]
            ious.append(n.max() / np.count_nonzero(own | (detected == best)) if best else 0.0)
        return float(np.median(ious))

    assert median_iou(segment(image)) > 0.95
    # Without the attachment the dim face is left out (median IoU 0.776 and 0.774; with it 0.992).
    monkeypatch.setattr(segmentation, "_attach_dim_faces", lambda flat, mask, *args: mask)
    assert median_iou(segment(image)) < 0.85
