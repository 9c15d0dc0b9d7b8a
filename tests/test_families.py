"""Second scene family: exact masks, truth, determinism, Poisson dose, LR geometry."""

import numpy as np
import pytest
from pydantic import ValidationError

from semqa.synth.families import FamilyConfig, fractal_noise, render_family, scan_family


@pytest.mark.parametrize("family", ["dome", "bse", "dark"])
def test_labels_match_truth_and_polarity(family):
    config = FamilyConfig(family=family, size_px=256, d50_px=16, streaks=0.05)
    scene = render_family(config, np.random.default_rng(5))
    truth = scene.particles
    assert len(truth) > 20 and truth.agglomerate.any() and truth.occluded.any()
    counts = np.bincount(scene.labels.ravel(), minlength=len(truth) + 1)[1:]
    big = truth.area_px > 50
    # Pixel counts of the label image agree with the exact visible areas (rasterisation only).
    assert np.median(np.abs(counts[big] - truth.area_px[big]) / truth.area_px[big]) < 0.02
    assert np.allclose(truth.ecd_um, truth.ecd_px * config.pixel_size_um)
    # Occluded particles show less than their whole ellipse.
    occ = truth[truth.occluded & ~truth.touches_border]
    assert (occ.ecd_px < occ.full_ecd_px).all()
    inside = scene.clean[scene.labels > 0].mean()
    outside = scene.clean[scene.labels == 0].mean()
    assert (inside < outside) == (family == "dark")


def test_same_seed_same_scene_and_scan():
    config = FamilyConfig(size_px=128, d50_px=10)
    a = scan_family(render_family(config, rng := np.random.default_rng(1)), config, rng)
    b = scan_family(render_family(config, rng := np.random.default_rng(1)), config, rng)
    c = scan_family(render_family(config, rng := np.random.default_rng(2)), config, rng)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not np.array_equal(a[0], c[0])


def test_scan_is_poisson_at_the_dose_and_lr_integrates():
    config = FamilyConfig(size_px=256, d50_px=12, dose=30.0, lr_dose=40.0, psf_sigma_px=0.0, texture=0.0, gradient=0.0)
    scene = render_family(config, np.random.default_rng(3))
    hr, lr = scan_family(scene, config, np.random.default_rng(4))
    sub = scene.clean[scene.labels == 0]
    level = float(sub.mean())
    # Poisson: variance of counts / dose equals mean / dose.
    assert np.var(hr[scene.labels == 0]) == pytest.approx(level / config.dose, rel=0.1)
    assert lr.shape == (64, 64) and scene.lr_labels.shape == (64, 64)
    lr_sub = lr[(scene.lr_labels == 0) & (np.add.reduceat(np.add.reduceat(scene.labels > 0, np.arange(0, 256, 4), 0), np.arange(0, 256, 4), 1) == 0)]
    assert np.var(lr_sub) == pytest.approx(level / config.lr_dose, rel=0.15)


def test_fractal_noise_is_unit_and_correlated():
    field = fractal_noise((128, 128), 2.6, np.random.default_rng(0))
    assert field.std() == pytest.approx(1.0) and abs(field.mean()) < 1e-9
    assert np.corrcoef(field[:, :-1].ravel(), field[:, 1:].ravel())[0, 1] > 0.5


def test_bad_config_is_refused():
    with pytest.raises(ValidationError):
        FamilyConfig(size_px=130, lr_scale=4)
    with pytest.raises(ValidationError):
        FamilyConfig(substrate_level=0.5, particle_level=0.51)
