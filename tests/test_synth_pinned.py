"""Synthesis speed-ups change no byte: pinned digests of scenes, and each fast path against its library.

The digests were taken with the renderer before issue 15's speed-ups (``semqa.synth.scenes`` at
``4a5b1d5``); the demo's figures, the gates' evaluation set and every test's data rest on those
bytes. A deliberate change of the scenes re-pins them, and says so. (They also pin numpy's and
scipy's numerics: a library upgrade that moves a last bit of an array shows here first. The truth
tables are pinned to 10 significant digits since session 14, when a fresh install's libraries gave
another digest of one full-precision table with every array unchanged.)
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
from matplotlib.path import Path as PolygonPath
from scipy import ndimage
from skimage.draw import polygon as skimage_polygon

from semqa.synth.randomized import random_scene_config
from semqa.synth.scenes import (
    SynthConfig,
    _any_inside,
    _depth_inside,
    _fill_polygon,
    _make_outline,
    _raster_mask,
    _rng,
    make_pairs,
    render_scene,
    scan_scene,
)


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:24]


#: clean, coverage, labels, HR scan, LR scan, truth CSV of one scene per family of settings.
PINNED_SCENES = {
    "demo": ["91549b47df56898034746659", "e793ab5d0b3840ceb29e750c", "a229b5c31419ff3fa5206427",
             "71df861cf80e13c7961be627", "bbcb7cebb4b452947fa2e8ff", "e5a6c10fe27519d920dcfd41"],
    "dense": ["696a213c577fd3d89c808ed9", "4f2d1a36140d28886b909c62", "245ee443baee54bbe7291a44",
              "2975a69011a42efe8fad50fe", "32e9f5659d8233a0c32086d6", "5492557836aff53dd4ca91c5"],
    "randomized": ["4e697d03e44f14cfb7d05a32", "2842714a86889df94ae2b59c", "d6879f2bcd7bffd85489f720",
                   "4ad829e18a938b04be685e05", "4e6194362789c1a0856e8e68", "d7bbe09979d915c381db6903"],
}  # fmt: skip

#: Every file of ``make_pairs(DIR, 2, SynthConfig(size_px=128, d50_um=1.0), seed=4)``.
PINNED_FILES = {
    "hr/synth_0000.tif": "159a70cadba9b4be33c134aa",
    "hr/synth_0001.tif": "8212de5b7f6137f70abd4723",
    "lr/synth_0000.tif": "3dff3204b82d29a540f8f571",
    "lr/synth_0001.tif": "b2bc1ec6fb8b4d0405f97dcc",
    "manifest.csv": "12288d25175874f0e97ae422",
    "particles.csv": "7189d029bc18e67ca31e7a19",
}


def _config(name: str) -> SynthConfig:
    if name == "demo":  # the demo's particle size, a smaller frame
        return SynthConfig(d50_um=2.0, size_px=256)
    if name == "dense":  # crowded, every particle faceted, most in touching pairs
        return SynthConfig(size_px=192, fill_fraction=0.3, touching_fraction=0.6, facet_fraction=1.0)
    return random_scene_config(np.random.default_rng(5), 192)[0]


@pytest.mark.parametrize("name", sorted(PINNED_SCENES))
def test_scene_arrays_and_truth_are_the_pinned_ones(name: str) -> None:
    config, rng = _config(name), _rng(3, 1)
    scene = render_scene(config, rng)
    hr, lr = scan_scene(scene, config, rng)
    arrays = (scene.clean, scene.coverage, scene.labels, hr, lr)
    # The truth table to 10 significant digits: its sizes come from library routines (convex
    # hulls, Feret calipers) whose last bits may move between releases. A fresh install
    # (numpy 2.4.6, scipy 1.17.1, pandas 3.1.1) gave another digest of the demo scene's full-precision
    # table with every array unchanged.
    table = scene.particles.to_csv(index=False, float_format="%.10g")
    got = [_sha(np.ascontiguousarray(a).tobytes()) for a in arrays] + [_sha(table.encode())]
    assert got == PINNED_SCENES[name]


def test_written_pair_set_is_the_pinned_one(tmp_path: Path) -> None:
    make_pairs(tmp_path, 2, SynthConfig(size_px=128, d50_um=1.0), seed=4)
    got = {p.relative_to(tmp_path).as_posix(): _sha(p.read_bytes()) for p in sorted(tmp_path.rglob("*")) if p.is_file()}
    assert got == PINNED_FILES


def _outlines(n: int, seed: int) -> list[np.ndarray]:
    config, rng = SynthConfig(facet_fraction=0.7), np.random.default_rng(seed)
    return [_make_outline(float(d), config, rng).xy / config.pixel_size_um for d in np.exp(rng.normal(np.log(2.0), 0.5, n))]


def _crossing_matrix_fill(rows: np.ndarray, cols: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """The even-odd fill by testing every scan line against every edge (the renderer's earlier form)."""
    y0, x0, y1, x1 = rows, cols, np.roll(rows, -1), np.roll(cols, -1)
    grid_y = np.arange(shape[0], dtype=float)[:, None]
    ri, ei = np.nonzero((y0[None, :] <= grid_y) != (y1[None, :] <= grid_y))
    x = x0[ei] + (ri - y0[ei]) / (y1[ei] - y0[ei]) * (x1[ei] - x0[ei])
    toggles = np.zeros((shape[0], shape[1] + 1), dtype=np.int64)
    np.add.at(toggles, (ri, np.clip(np.floor(x).astype(np.int64) + 1, 0, shape[1])), 1)
    return (np.cumsum(toggles[:, : shape[1]], axis=1) & 1).astype(bool)


def _frame(xy: np.ndarray) -> tuple[np.ndarray, np.ndarray, tuple[int, int]]:
    rows, cols = xy[:, 1] - xy[:, 1].min() + 2.3, xy[:, 0] - xy[:, 0].min() + 1.7
    return rows, cols, (int(np.ceil(rows.max())) + 3, int(np.ceil(cols.max())) + 3)


def test_scan_line_fill_equals_skimage_polygon() -> None:
    for xy in _outlines(60, 0):
        rows, cols, shape = _frame(xy)
        expected = np.zeros(shape, dtype=bool)
        rr, cc = skimage_polygon(rows, cols, shape=shape)
        expected[rr, cc] = True
        np.testing.assert_array_equal(_fill_polygon(rows, cols, shape), expected)


def test_scan_line_fill_keeps_the_half_open_rule_on_vertices_at_scan_lines() -> None:
    # Vertices exactly on scan lines, where skimage's boundary rule and the renderer's differ:
    # the renderer's own earlier form is the reference.
    for xy in _outlines(30, 1):
        rows, cols, shape = _frame(np.round(xy))
        np.testing.assert_array_equal(_fill_polygon(rows, cols, shape), _crossing_matrix_fill(rows, cols, shape))


def test_depth_on_the_inside_box_equals_the_whole_transform() -> None:
    for xy in _outlines(30, 2):
        xy = xy + 20.0
        lo = np.floor(xy.min(0)).astype(int) - 1
        shape = (int(np.ceil(xy[:, 1].max())) - lo[1] + 2, int(np.ceil(xy[:, 0].max())) - lo[0] + 2)
        sub = _raster_mask(xy, (int(lo[1]), int(lo[0])), shape, 4)
        inside = np.nonzero(sub)
        np.testing.assert_array_equal(_depth_inside(sub, inside), ndimage.distance_transform_edt(sub)[inside])


def test_bounding_box_prefilter_equals_the_test_of_every_point() -> None:
    shapes = _outlines(20, 3)
    rng = np.random.default_rng(4)
    for a, b in zip(shapes, shapes[1:], strict=False):
        for shift in rng.uniform(-1.2, 1.2, size=(15, 2)) * np.ptp(a, axis=0):
            moved = b + shift
            assert _any_inside(a, moved) == bool(PolygonPath(a).contains_points(moved).any())
