"""Splitting of touching and agglomerated particles, and the agglomerate scenes themselves.

Two families: disc/outline drawings made here (flat contrast, Poisson noise) and the
:mod:`semqa.synth.agglomerates` renderer (Fourier-perturbed particles, SE edge brightening or
flat contrast). A neck split must not depend on the particle size in pixels, and a single
elongated, L-shaped or irregular particle must stay whole.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage
from skimage.measure import regionprops

from semqa.particles.contacts import line_threshold, line_threshold_fdr
from semqa.particles.matching import mean_scores, score_image
from semqa.particles.segmentation import SegmentationConfig, segment
from semqa.synth.agglomerates import (
    AgglomerateConfig,
    render_agglomerates,
    scan_agglomerates,
)


def _noisy(img: np.ndarray, seed: int, dose: float = 200.0) -> np.ndarray:
    return np.random.default_rng(seed).poisson(img * dose) / dose


def _disc_pair(radius: float, overlap: float, seed: int) -> np.ndarray:
    """Two equal discs whose centres lie ``overlap`` × the sum of radii apart (a neck between them)."""
    size = int(6 * radius) + 40
    img = np.full((size, size), 0.2)
    yy, xx = np.mgrid[0:size, 0:size]
    c, d = size / 2, overlap * 2 * radius
    for cx in (c - d / 2, c + d / 2):
        img[(yy - c) ** 2 + (xx - cx) ** 2 <= radius**2] = 0.6
    return _noisy(img, seed)


@pytest.mark.parametrize("radius", [5, 12, 30, 50])
def test_touching_pair_with_a_neck_is_split_at_every_size(radius: float) -> None:
    # Centre distance 0.85 of the sum of radii: neck half-width sqrt(1 - 0.85²) = 0.53 radii.
    labels = segment(_disc_pair(radius, 0.85, seed=radius))
    assert labels.max() == 2


@pytest.mark.parametrize("width", [8, 16, 30])
def test_l_shaped_particle_stays_whole(width: int) -> None:
    arm = 4 * width
    img = np.full((arm + 60, arm + 60), 0.2)
    img[30 : 30 + arm, 30 : 30 + width] = 0.6
    img[30 + arm - width : 30 + arm, 30 : 30 + arm] = 0.6
    assert segment(_noisy(img, seed=width)).max() == 1


@pytest.mark.parametrize("aspect", [3.0, 5.0])
def test_elongated_particle_stays_whole(aspect: float) -> None:
    img = np.full((300, 300), 0.2)
    yy, xx = np.mgrid[0:300, 0:300]
    img[((yy - 150) / (60 / aspect)) ** 2 + ((xx - 150) / 60) ** 2 <= 1] = 0.6
    assert segment(_noisy(img, seed=1)).max() == 1


def _scene(seed: int, **kwargs) -> tuple[np.ndarray, np.ndarray]:
    config = AgglomerateConfig(size_px=512, **kwargs)
    rng = np.random.default_rng(seed)
    scene = render_agglomerates(config, rng)
    return scan_agglomerates(scene, config, rng), scene.labels


CONTRASTS = {"se-edges": {}, "flat-low-dose": {"edge_gain": 0.0, "dose": 30.0}}


@pytest.mark.parametrize("contrast", CONTRASTS)
def test_isolated_irregular_particles_are_not_over_split(contrast: str) -> None:
    image, truth = _scene(5, single_fraction=1.0, fill_fraction=0.15, **CONTRASTS[contrast])
    score = score_image(segment(image), truth, 0.1)
    # Irregular (Fourier-perturbed, aspect ≤ 2.5) single particles: counted within 20 %,
    # nearly all matched one to one.
    assert score.count_rel_error <= 0.2, score
    assert score.recall >= 0.9, score


@pytest.mark.parametrize("contrast", CONTRASTS)
def test_small_clusters_are_split_into_about_their_particles(contrast: str) -> None:
    # Clusters of 3–5 with short necks (centres ≥ 0.85 of the sum of radii, ≤ 10 % overlap).
    kwargs = {"cluster_min": 3, "cluster_max": 5, "single_fraction": 0.0, "contact_min": 0.85, "overlap_max": 0.1, "fill_fraction": 0.2}
    scores, ratios = [], []
    # Three scenes: one scene's precision (53 objects) moves by 0.02 with a single cut.
    for seed in (5, 6, 7):
        image, truth = _scene(seed, **kwargs, **CONTRASTS[contrast])
        labels = segment(image)
        scores.append(score_image(labels, truth, 0.1))
        # More objects than the clusters alone: the clusters are split, not kept whole.
        ratios.append(labels.max() / ndimage.label(labels > 0)[1])
    score = mean_scores(scores)
    # Pieces found are real particles (precision), and at least ~45 % of the particles come out
    # one to one: what distance-map splitting recovers where overlaps leave no neck (the
    # benchmark prints the full figures).
    assert score.precision >= 0.75, score
    assert score.recall >= 0.4, score
    assert min(ratios) > 1.5, ratios


def test_agglomerate_scene_has_clusters_of_the_configured_sizes_and_exact_labels() -> None:
    config = AgglomerateConfig(size_px=256, cluster_min=3, cluster_max=6)
    scene = render_agglomerates(config, np.random.default_rng(0))
    p = scene.particles
    sizes = p[p.cluster >= 0].groupby("cluster").size()
    assert len(sizes) > 0 and sizes.between(2, 6).all()
    # Visible areas in the truth equal the label counts; labels are the particle ids.
    counts = np.bincount(scene.labels.ravel(), minlength=len(p) + 1)[1:]
    assert np.array_equal(counts, p.area_px.to_numpy())
    # Non-convex outlines occur: some particle is measurably less solid than its hull.
    solidity = [r.solidity for r in regionprops(scene.labels) if r.area >= 50]
    assert min(solidity) < 0.9


def _overlapping_discs(edge_gain: float, yields: tuple[float, float], seed: int) -> np.ndarray:
    """Disc B lying over disc A (radius 25 px, centres 0.4 of the sum of radii apart): the union's
    neck is 0.92 of a radius wide, so its distance map has one maximum; B's outline is
    brightened by ``edge_gain`` within 1.5 px of it (the SE edge effect)."""
    size, radius = 140, 25.0
    yy, xx = np.mgrid[0:size, 0:size].astype(float)
    c, d = size / 2, 0.4 * 2 * radius
    img = np.full((size, size), 0.2)
    img[np.hypot(yy - c, xx - (c - d / 2)) <= radius] = yields[0]
    rb = np.hypot(yy - c, xx - (c + d / 2))
    on_b = rb <= radius
    img[on_b] = yields[1] * (1.0 + edge_gain * np.exp(-(radius - rb[on_b]) / 1.5))
    return _noisy(ndimage.gaussian_filter(img, 0.8), seed)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_overlapping_particles_are_split_at_their_contact_edge(seed: int) -> None:
    # No neck (one distance-map maximum): only the intensity edge of B's outline separates them.
    with_edge = segment(_overlapping_discs(0.4, (0.5, 0.6), seed))
    assert with_edge.max() == 2
    # The two pieces follow the discs: B's piece lies on the right.
    cols = [np.nonzero(with_edge == k)[1].mean() for k in (1, 2)]
    assert abs(cols[0] - cols[1]) > 15


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_same_union_without_a_contact_edge_stays_whole(seed: int) -> None:
    # The same outline in one uniform yield: no edge inside, so no cut (noise alone passes the
    # per-frame line test with probability about the false-detection budget).
    assert segment(_overlapping_discs(0.0, (0.55, 0.55), seed)).max() == 1


def test_an_upscaled_image_is_split_by_the_distance_map_only() -> None:
    # A generator's output has no scan noise for the contact test's null distribution: the cut
    # that splits the scan is not made in an image marked upscaled, unless the config asks for it.
    from semqa.analysis import AnalysisConfig, measure_image

    image = _overlapping_discs(0.4, (0.5, 0.6), 1)
    config = AnalysisConfig(exclude_border=False)
    assert len(measure_image(image, 0.1, config).particles) == 2
    assert len(measure_image(image, 0.1, config, upscaled=True).particles) == 1
    asked = config.model_copy(update={"segmentation": SegmentationConfig(contact_cuts_upscaled=True)})
    assert len(measure_image(image, 0.1, asked, upscaled=True).particles) == 2


def _ring_cluster(seed: int, dose: float = 100.0) -> tuple[np.ndarray, np.ndarray]:
    """Six overlapping discs (radius 12 px, centres 20 px from the frame's centre) around a
    patch of substrate, Poisson noise; the image and its exact labels."""
    size, radius, spread = 160, 12.0, 20.0
    yy, xx = np.mgrid[0:size, 0:size]
    truth = np.zeros((size, size), dtype=np.int32)
    for k in range(6):
        a = 2 * np.pi * k / 6
        truth[(yy - size / 2 - spread * np.sin(a)) ** 2 + (xx - size / 2 - spread * np.cos(a)) ** 2 <= radius**2] = k + 1
    return _noisy(np.where(truth > 0, 0.6, 0.2), seed, dose), truth


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_substrate_enclosed_by_a_cluster_is_opened_and_the_cluster_split(seed: int) -> None:
    img, truth = _ring_cluster(seed)
    labels = segment(img)
    assert labels[80, 80] == 0  # the enclosed substrate is background again
    assert segment(img, SegmentationConfig(open_holes=False))[80, 80] > 0  # the mask alone fills it
    # Split: each disc lies mostly in an object of its own. (Not IoU > 0.5 with it: a false
    # contact cut inside one disc is the contact step's per-frame budget, false_detections —
    # 5 of 100 seeds of this frame, measured — and halves a disc's IoU without merging any.)
    best = [np.bincount(labels[truth == k]).argmax() for k in range(1, 7)]
    assert 0 not in best and len(set(best)) == 6


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_no_hole_is_opened_in_a_uniform_particle_at_low_dose(seed: int) -> None:
    # Dose 30 e⁻/px: a pixel's noise is about half the particle's contrast, so many single
    # interior pixels lie below the half level; only a significant patch may be opened.
    size, radius = 160, 40
    yy, xx = np.mgrid[0:size, 0:size]
    inside = (yy - 80) ** 2 + (xx - 80) ** 2 <= radius**2
    labels = segment(_noisy(np.where(inside, 0.6, 0.2), seed, dose=30.0))
    deep = ndimage.distance_transform_edt(inside) > 3
    assert (labels[deep] > 0).all()


def test_dim_particle_interior_is_not_opened() -> None:
    # A rimmed particle whose interior is a third of the way from the substrate to the rim:
    # particle material (its cluster's median level), not substrate.
    size = 160
    yy, xx = np.mgrid[0:size, 0:size]
    r2 = (yy - 80) ** 2 + (xx - 80) ** 2
    img = np.where(r2 <= 40**2, 0.6, 0.2)
    img = np.where(r2 <= 34**2, 0.33, img)
    labels = segment(_noisy(img, 0))
    assert (labels[r2 <= 30**2] > 0).all()


def test_patch_cores_equal_the_whole_frame_distance_map() -> None:
    """The hole test's patch cores, measured per patch box, are those of the frame's distance
    map: patches touching each other diagonally and the frame's edge included."""
    from semqa.particles.holes import _patch_cores

    rng = np.random.default_rng(4)
    for shape in [(60, 70), (25, 25)]:
        field = ndimage.gaussian_filter(rng.random(shape), 3.0)
        below = (field > np.median(field)) | (rng.random(shape) < 0.1)
        patches, n = ndimage.label(below)
        selected = rng.random(n + 1) < 0.7
        selected[0] = False
        for depth in (0.5, 1.0, 1.5, 2.2):
            expected = (ndimage.distance_transform_edt(below) > depth) & selected[patches]
            assert expected.any()
            np.testing.assert_array_equal(_patch_cores(patches, selected, depth), expected)


def test_fdr_line_rule_keeps_null_frames_within_the_budget() -> None:
    # Frames of 200 lines without contacts (z standard normal): the share of frames in which any
    # line is kept stays within the false-detection budget (0.05; 3 binomial sds over 2000 frames).
    rng = np.random.default_rng(0)
    kept = [(z > line_threshold_fdr(z, 0.05)).any() for z in rng.standard_normal((2000, 200))]
    assert np.mean(kept) <= 0.05 + 3 * np.sqrt(0.05 * 0.95 / 2000)


def test_fdr_line_rule_admits_weaker_contacts_among_many_real_ones() -> None:
    # 100 clear contact lines and 50 weaker ones (z = 3.2): the per-frame Bonferroni budget
    # rejects the weaker ones, the false-discovery rule keeps them.
    z = np.concatenate([np.full(100, 6.0), np.full(50, 3.2), [-np.inf]])
    assert line_threshold(150, 0.05) > 3.2
    assert line_threshold_fdr(z, 0.05) < 3.2
    assert line_threshold_fdr(np.array([-np.inf]), 0.05) == np.inf
