"""Segmentation: accuracy against synthetic ground truth, robustness, bad input.

The accuracy tests use :mod:`semqa.synth.scenes` scenes (SEM-like contrast: bright rims, uneven
background, probe blur, Poisson noise) whose true particle outlines are known. The
reference population is the true particles not cut by the image border, the same
population :func:`semqa.particles.measure.measure_particles` keeps.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import ndimage
from skimage.draw import ellipse

from semqa.errors import InputError
from semqa.particles.matching import pair_split
from semqa.particles.measure import measure_particles
from semqa.stats.psd import d_values
from semqa.particles.segmentation import SegmentationConfig, segment
from semqa.synth.scenes import SynthConfig, render_scene, scan_scene

N_IMAGES = 20
SEEDS = range(1000, 1000 + N_IMAGES)


def _scene(seed: int, config: SynthConfig):
    rng = np.random.default_rng(seed)
    scene = render_scene(config, rng)
    hr, lr = scan_scene(scene, config, rng)
    return scene, hr, lr


@pytest.fixture(scope="module")
def hr_results() -> pd.DataFrame:
    """Per-image D-values (measured and true) and per-pair split outcomes for 20 HR scenes.

    768 × 768 px frames hold ~70 particles each, enough for a per-image median to move by
    less than a per cent when one particle is lost or gained.
    """
    config = SynthConfig(size_px=768)
    rows, pairs = [], []
    for seed in SEEDS:
        scene, hr, _ = _scene(seed, config)
        labels = segment(hr)
        particles, _ = measure_particles(labels, config.pixel_size_um)
        truth = scene.particles[~scene.particles.touches_border]
        est = d_values([p.ecd_um for p in particles])
        true = d_values(truth.ecd_um.to_numpy())
        rows.append({"seed": seed, "n": len(particles), "n_true": len(truth), **{
            f"{k}_est": e for k, e in zip(("d10", "d50", "d90"), est)}, **{
            f"{k}_true": t for k, t in zip(("d10", "d50", "d90"), true)}})
        designed = truth[truth.touching_group >= 0].groupby("touching_group").particle_id.apply(list)
        pairs += [pair_split(labels, scene.labels, ids) for ids in designed if len(ids) == 2]
    frame = pd.DataFrame(rows)
    frame.attrs["pairs"] = pairs
    return frame


@pytest.mark.slow
def test_d50_within_2_percent_on_20_hr_images(hr_results: pd.DataFrame) -> None:
    err = (hr_results.d50_est - hr_results.d50_true).abs() / hr_results.d50_true
    assert err.mean() <= 0.02, f"mean |ΔD50|/D50 = {err.mean():.4f}"


@pytest.mark.slow
@pytest.mark.parametrize("d", ["d10", "d90"])
def test_d10_d90_within_4_percent_on_20_hr_images(hr_results: pd.DataFrame, d: str) -> None:
    err = (hr_results[f"{d}_est"] - hr_results[f"{d}_true"]).abs() / hr_results[f"{d}_true"]
    assert err.mean() <= 0.04, f"mean |Δ{d.upper()}|/{d.upper()} = {err.mean():.4f}"


@pytest.mark.slow
def test_touching_pairs_split(hr_results: pd.DataFrame) -> None:
    pairs = hr_results.attrs["pairs"]
    assert len(pairs) >= 30, "too few designed touching pairs to judge"
    assert np.mean(pairs) >= 0.90, f"split {np.mean(pairs):.3f} of {len(pairs)} pairs"


@pytest.mark.slow
def test_particle_count_close_to_truth(hr_results: pd.DataFrame) -> None:
    found, true = hr_results.n.sum(), hr_results.n_true.sum()
    assert abs(found - true) <= 0.03 * true, f"{found} particles found, {true} true"


def test_lr_image_d50_close_to_truth() -> None:
    """A 4× coarser scan (D50 ≈ 7.5 px) still sizes the population's median within 5 %.

    Eight scenes (~550 particles): a sample median's standard error is about 1.25 σ/√n
    (Kendall & Stuart, *The Advanced Theory of Statistics*, vol. 1, §10.10), some 3.5 % of the
    D50 for the ~200 particles of three scenes — too near the tolerance to judge the sizing by.
    """
    config = SynthConfig(size_px=768)
    ests, trues = [], []
    for seed in range(11, 19):
        scene, _, lr = _scene(seed, config)
        particles, _ = measure_particles(segment(lr), config.lr_pixel_size_um)
        ests += [p.ecd_um for p in particles]
        trues += list(scene.particles[~scene.particles.touches_border_lr].ecd_um)
    est, true = d_values(ests)[1], d_values(trues)[1]
    assert abs(est - true) / true <= 0.05, (est, true)


def _ring_particles(shape=(256, 256), seed=0) -> tuple[np.ndarray, int]:
    """Ellipses with bright rims and darker interiors on a sloped background, Poisson noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]]
    img = 0.15 + 0.15 * xx / shape[1]
    centres = [(50, 50), (50, 150), (150, 60), (160, 170), (210, 110)]
    for r, c in centres:
        angle = rng.uniform(0, np.pi)
        rr, cc = ellipse(r, c, 22, 14, shape=shape, rotation=angle)
        img[rr, cc] = 0.9
        rr, cc = ellipse(r, c, 18, 10, shape=shape, rotation=angle)
        img[rr, cc] = np.minimum(img[rr, cc], 0.4)
    return rng.poisson(img * 200) / 200.0, len(centres)


def test_rimmed_particles_on_sloped_background_are_filled_and_counted() -> None:
    img, n = _ring_particles()
    labels = segment(img)
    assert labels.dtype == np.int32 and labels.shape == img.shape
    assert labels.max() == n
    # Holes filled: the particle centres belong to particles.
    for r, c in [(50, 50), (50, 150), (150, 60), (160, 170), (210, 110)]:
        assert labels[r, c] > 0


def test_elongated_particle_stays_whole() -> None:
    img = np.full((200, 300), 0.2)
    rr, cc = ellipse(100, 150, 12, 110, shape=img.shape, rotation=0.3)
    img[rr, cc] = 0.7
    img = np.random.default_rng(3).poisson(img * 300) / 300.0
    assert segment(img).max() == 1


def test_two_touching_disks_are_split() -> None:
    img = np.full((120, 200), 0.2)
    yy, xx = np.mgrid[0:120, 0:200]
    for c in (70, 130):
        img[(yy - 60) ** 2 + (xx - c) ** 2 <= 30**2] = 0.6
    img = np.random.default_rng(4).poisson(img * 300) / 300.0
    labels = segment(img)
    assert labels.max() == 2
    assert labels[60, 50] != labels[60, 150]


def test_flat_and_noise_only_images_give_no_particles() -> None:
    assert segment(np.zeros((64, 64))).max() == 0
    assert segment(np.full((64, 64), 0.3)).max() == 0
    noise = np.random.default_rng(5).poisson(40, (256, 256)) / 200.0
    assert segment(noise).max() == 0


def test_given_particle_diameter_is_used() -> None:
    img, n = _ring_particles()
    assert segment(img, SegmentationConfig(particle_diameter_px=35)).max() == n


@pytest.mark.parametrize(
    "bad",
    [
        np.zeros((4, 4, 3)),
        np.zeros(10),
        np.zeros((2, 50)),
        np.array([[np.nan, 0, 0]] * 3),
        np.array([[np.inf, 0, 0]] * 3),
        np.zeros((5, 5), dtype=bool),
        np.zeros((5, 5), dtype=complex),
        np.array([["a"] * 5] * 5),
    ],
)
def test_bad_input_raises_input_error(bad: np.ndarray) -> None:
    with pytest.raises(InputError):
        segment(bad)


def test_integer_image_is_accepted() -> None:
    img, n = _ring_particles()
    assert segment((img * 1000).astype(np.uint16)).max() == n


def test_fast_max_filter_equals_scipy_maximum_filter() -> None:
    from scipy import ndimage

    from semqa.particles.primitives import max_filter_square

    rng = np.random.default_rng(3)
    for shape in [(64, 64), (3, 3), (5, 40), (40, 5), (1, 7)]:
        for size in (1, 3, 5, 11, 21):
            for image in (rng.random(shape) > 0.97, rng.integers(0, 256, shape).astype(np.uint8),
                          rng.integers(0, 2**16, shape).astype(np.uint16)):
                assert np.array_equal(max_filter_square(image, size), ndimage.maximum_filter(image, size=size))


def test_label_medians_equal_numpy_per_label() -> None:
    from semqa.particles.primitives import label_median

    rng = np.random.default_rng(4)
    labels = rng.integers(0, 6, (40, 40))
    labels[labels == 4] = 0  # a label without pixels
    values = rng.normal(size=labels.shape).astype(np.float32)
    median = label_median(values, labels)
    for k in range(1, 6):
        v = np.sort(values[labels == k])
        if v.size == 0:
            assert np.isnan(median[k - 1])
        else:
            assert median[k - 1] == v[(v.size - 1) // 2]  # lower median


def test_block_mean_equals_block_reduce_mean() -> None:
    from skimage.measure import block_reduce

    from semqa.particles.primitives import block_mean

    rng = np.random.default_rng(5)
    for shape, factor in [((64, 64), 2), ((37, 50), 4), ((9, 9), 3), ((5, 7), 1)]:
        image = rng.random(shape).astype(np.float32)
        h, w = shape[0] // factor * factor, shape[1] // factor * factor
        expected = block_reduce(image[:h, :w], (factor, factor), np.mean)
        np.testing.assert_allclose(block_mean(image, factor), expected, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("levels", [3, 50, None])
def test_flood_equals_skimage_watershed(levels: int | None) -> None:
    """Same labels as the library's watershed on crops with a zero-border mask, ties included
    (few grey levels: many equal values, so the order of the queue decides)."""
    from scipy import ndimage
    from skimage.segmentation import watershed

    from semqa.particles.primitives import flood

    rng = np.random.default_rng(0 if levels is None else levels)
    for shape in [(40, 40), (23, 61), (5, 5)]:
        image = rng.random(shape)
        if levels is not None:
            image = np.floor(image * levels) / levels
        image = ndimage.gaussian_filter(image, 1.0).astype(np.float32) if levels is None else image
        mask = np.zeros(shape, dtype=bool)
        mask[1:-1, 1:-1] = rng.random((shape[0] - 2, shape[1] - 2)) < 0.85
        markers, n = ndimage.label(mask & (rng.random(shape) < 0.05))
        expected = watershed(image, markers, mask=mask)
        out = flood(image, markers, mask)
        assert out.dtype == expected.dtype
        np.testing.assert_array_equal(out, expected)
    with pytest.raises(ValueError, match="border"):
        flood(np.zeros((4, 4)), np.ones((4, 4), dtype=np.int32), np.ones((4, 4), dtype=bool))


def test_dilate_cross_equals_binary_dilation() -> None:
    from scipy import ndimage

    from semqa.particles.primitives import dilate_cross

    rng = np.random.default_rng(11)
    for shape in [(40, 40), (1, 9), (9, 1), (2, 2), (17, 31)]:
        for density in (0.02, 0.3, 0.9):
            mask = rng.random(shape) < density
            np.testing.assert_array_equal(dilate_cross(mask), ndimage.binary_dilation(mask))


def test_saddles_equal_the_highest_crossing_per_pair() -> None:
    """The merge tree's saddles: for each 8-neighbouring pair of regions, the highest over the
    pixel pairs across their boundary of the lower distance, as a per-pair loop computes it."""
    from semqa.particles.segmentation import _saddles

    rng = np.random.default_rng(7)
    regions = rng.integers(0, 6, size=(30, 25))
    dist = np.round(rng.random((30, 25)) * 8).astype(np.float32)  # ties, as distances have
    ra, rb, saddle = _saddles(regions, dist, 5)
    expected = {}
    for r in range(30):
        for c in range(25):
            for dr, dc in ((0, 1), (1, 0), (1, 1), (1, -1)):
                r2, c2 = r + dr, c + dc
                if not (0 <= r2 < 30 and 0 <= c2 < 25):
                    continue
                a, b = int(regions[r, c]), int(regions[r2, c2])
                if a != b and a > 0 and b > 0:
                    key = (min(a, b), max(a, b))
                    expected[key] = max(expected.get(key, -np.inf), float(min(dist[r, c], dist[r2, c2])))
    assert list(zip(ra.tolist(), rb.tolist())) == sorted(expected)
    assert saddle.dtype == np.float64
    np.testing.assert_array_equal(saddle, [expected[k] for k in sorted(expected)])
    empty = _saddles(np.zeros((4, 4), dtype=np.int32), np.zeros((4, 4), dtype=np.float32), 0)
    assert all(x.size == 0 for x in empty)


def _grid_of_shapes(pairs: bool, seed: int, dose: float = 300.0) -> np.ndarray:
    """8 × 8 cells of 32 px, one shape each, drawn on a 4× finer grid and block-averaged (edges
    partly covered, as a scan's are), blurred by a 0.5 px probe, Poisson at ``dose``. ``pairs``:
    two discs of radius 4 and 3.2–4 px, centres 0.9 of their radii's sum apart (shallow notches
    and neck, ECD 8 px each); else one ellipse of ECD 8 px and aspect 1–2."""
    rng = np.random.default_rng(seed)
    ss, cell, r = 4, 32, 4.0
    fine = np.full((8 * cell * ss, 8 * cell * ss), 0.2)
    yy, xx = np.mgrid[0 : cell * ss, 0 : cell * ss] / ss
    for i in range(8):
        for j in range(8):
            cy, cx = cell / 2 + rng.uniform(-1, 1, 2)
            t = rng.uniform(0, np.pi)
            if pairs:
                r2 = r * rng.uniform(0.8, 1.0)
                dy, dx = 0.45 * (r + r2) * np.sin(t), 0.45 * (r + r2) * np.cos(t)
                shape = ((yy - cy - dy) ** 2 + (xx - cx - dx) ** 2 <= r**2) | ((yy - cy + dy) ** 2 + (xx - cx + dx) ** 2 <= r2**2)
            else:
                aspect = rng.uniform(1, 2)
                u = ((yy - cy) * np.cos(t) + (xx - cx) * np.sin(t)) / (r * np.sqrt(aspect))
                v = (-(yy - cy) * np.sin(t) + (xx - cx) * np.cos(t)) / (r / np.sqrt(aspect))
                shape = u * u + v * v <= 1
            fine[i * cell * ss : (i + 1) * cell * ss, j * cell * ss : (j + 1) * cell * ss][shape] = 0.6
    image = ndimage.gaussian_filter(fine.reshape(8 * cell, ss, 8 * cell, ss).mean(axis=(1, 3)), 0.5)
    return rng.poisson(image * dose) / dose


def _parts_per_cell(labels: np.ndarray) -> np.ndarray:
    return np.array([np.unique(labels[i : i + 32, j : j + 32]).size - 1 for i in range(0, 256, 32) for j in range(0, 256, 32)])


def test_small_overlapping_pairs_are_split_on_the_fine_grid() -> None:
    # On the pixel grid the distance map of 8 px particles takes a few quantised values (3, 3.16,
    # 3.61, 4 px), of the order of these necks' depth: the fine grid splits what it cannot.
    image = _grid_of_shapes(pairs=True, seed=1)
    fine = segment(image)
    pixel = segment(image, SegmentationConfig(split_subpixel=1))
    assert np.array_equal(fine > 0, pixel > 0)  # the grid changes the partition, not the measured pixels
    assert np.mean(_parts_per_cell(fine) == 2) >= 0.95
    assert np.mean(_parts_per_cell(pixel) == 2) <= 0.85


def test_small_convex_particles_stay_whole_on_the_fine_grid() -> None:
    assert np.all(_parts_per_cell(segment(_grid_of_shapes(pairs=False, seed=2))) == 1)
