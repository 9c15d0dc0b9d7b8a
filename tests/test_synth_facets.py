"""The faceted-particle renderer (semqa.synth.facets): deterministic, exact labels, the sizes and contrasts asked for."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from semqa.synth.facets import LEVELS, FacetConfig, render_facets


def test_same_seed_same_scene_and_labels_are_the_particles_table() -> None:
    config = FacetConfig(size_px=192, d50_px=14, dose=80)
    a, b = render_facets(config, np.random.default_rng(5)), render_facets(config, np.random.default_rng(5))
    assert np.array_equal(a.image, b.image) and np.array_equal(a.labels, b.labels)
    counts = np.bincount(a.labels.ravel(), minlength=len(a.particles) + 1)[1:]
    assert np.array_equal(counts, a.particles.area_px.to_numpy())
    edge = set(np.unique(np.concatenate([a.labels[0], a.labels[-1], a.labels[:, 0], a.labels[:, -1]]))) - {0}
    assert set(a.particles.label[a.particles.touches_border]) == edge


@pytest.mark.parametrize("d50", [6.0, 20.0, 50.0])
def test_median_ecd_is_the_one_asked_for_without_overlaps(d50: float) -> None:
    scene = render_facets(FacetConfig(size_px=512, d50_px=d50, overlap_fraction=0.0), np.random.default_rng(2))
    inside = scene.particles[~scene.particles.touches_border]
    assert len(inside) >= 10
    # Rasterising a polygon of a few pixels moves its area by its perimeter's half-pixel band.
    assert np.median(inside.ecd_px) == pytest.approx(d50, rel=0.12 if d50 < 10 else 0.06)


def test_visible_part_of_an_overlapped_particle_is_one_piece() -> None:
    scene = render_facets(FacetConfig(size_px=256, d50_px=24, overlap_fraction=1.0, max_overlap=0.5), np.random.default_rng(3))
    for label in scene.particles.label[scene.particles.area_px > 0]:
        assert ndimage.label(scene.labels == label)[1] == 1


@pytest.mark.parametrize("contrast", ["se", "bse", "dark"])
def test_particles_stand_out_with_their_contrast_and_the_dose_sets_the_noise(contrast: str) -> None:
    config = FacetConfig(size_px=256, d50_px=20, contrast=contrast, dose=50, gradient=0.0, texture=0.0, rim=0.0, psf_sigma_px=0.0)
    scene = render_facets(config, np.random.default_rng(4))
    sub, part = LEVELS[contrast]
    inside = ndimage.binary_erosion(scene.labels > 0, iterations=2)
    outside = ndimage.binary_erosion(scene.labels == 0, iterations=2)
    assert np.sign(scene.image[inside].mean() - scene.image[outside].mean()) == np.sign(part - sub)
    # Poisson counts / dose on a flat substrate: mean = level, variance = level / dose.
    assert scene.image[outside].mean() == pytest.approx(sub, rel=0.02)
    assert scene.image[outside].var() == pytest.approx(sub / config.dose, rel=0.1)

