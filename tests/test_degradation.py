"""The LR fast-scan model: shapes, area integration, shot-noise statistics, bad input."""

import numpy as np
import pytest
from pydantic import ValidationError

from semqa.sr.degradation import DegradationConfig, degrade, scan, shot_noise
from semqa.errors import InputError


@pytest.mark.parametrize("scale", [2, 4])
def test_lr_shape_is_hr_over_scale_with_crop(scale):
    hr = np.full((130, 97), 0.5)
    lr = degrade(hr, DegradationConfig(scale=scale), np.random.default_rng(0))
    assert lr.shape == (130 // scale, 97 // scale)
    assert lr.dtype == np.float32
    assert 0.0 <= lr.min() and lr.max() <= 1.0


def test_area_integration_averages_each_block():
    # No blur, a dose so high that shot noise is below 1e-4: each LR pixel is its block's mean.
    rng = np.random.default_rng(1)
    hr = rng.uniform(0.1, 0.9, size=(64, 64))
    cfg = DegradationConfig(scale=4, psf_sigma_hr_px=0.0, dose=1e9, read_noise=0.0)
    lr = degrade(hr, cfg, np.random.default_rng(2))
    expected = hr.reshape(16, 4, 16, 4).mean(axis=(1, 3))
    np.testing.assert_allclose(lr, expected, atol=2e-4)


def test_shot_noise_is_poisson_at_the_dose():
    level, dose = 0.3, 50.0
    noisy = shot_noise(np.full((400, 400), level), dose, np.random.default_rng(3))
    # Poisson: mean I, variance I / dose (in yield units).
    assert noisy.mean() == pytest.approx(level, rel=0.01)
    assert noisy.var() == pytest.approx(level / dose, rel=0.05)


def test_lr_noise_follows_lr_dose_per_lr_pixel():
    cfg = DegradationConfig(scale=4, dose=40.0, read_noise=0.0)
    lr = degrade(np.full((800, 800), 0.5), cfg, np.random.default_rng(4))
    assert lr.var() == pytest.approx(0.5 / 40.0, rel=0.05)


def test_default_psf_is_one_lr_pixel_fwhm():
    assert DegradationConfig(scale=4).psf_sigma * 2.3548 == pytest.approx(4.0, rel=1e-3)
    assert DegradationConfig(scale=2).psf_sigma * 2.3548 == pytest.approx(2.0, rel=1e-3)
    assert DegradationConfig(scale=2, psf_sigma_hr_px=0.7).psf_sigma == 0.7


def test_blur_spreads_an_edge():
    hr = np.zeros((64, 64))
    hr[:, 32:] = 1.0
    sharp = degrade(hr, DegradationConfig(scale=2, psf_sigma_hr_px=0.0, dose=1e9, read_noise=0), np.random.default_rng(0))
    soft = degrade(hr, DegradationConfig(scale=2, psf_sigma_hr_px=3.0, dose=1e9, read_noise=0), np.random.default_rng(0))
    assert np.count_nonzero((sharp[8] > 0.05) & (sharp[8] < 0.95)) == 0
    assert np.count_nonzero((soft[8] > 0.05) & (soft[8] < 0.95)) >= 2


def test_deterministic_given_the_generator():
    hr = np.random.default_rng(5).uniform(size=(64, 64))
    cfg = DegradationConfig()
    a = degrade(hr, cfg, np.random.default_rng(9))
    b = degrade(hr, cfg, np.random.default_rng(9))
    c = degrade(hr, cfg, np.random.default_rng(10))
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


def test_hr_scan_keeps_shape_and_range():
    out = scan(np.full((32, 48), 0.4), psf_sigma_px=0.6, dose=200, rng=np.random.default_rng(0))
    assert out.shape == (32, 48) and out.dtype == np.float32
    assert abs(float(out.mean()) - 0.4) < 0.02


@pytest.mark.parametrize(
    "image",
    [np.zeros((8, 8, 3)), np.zeros(16), np.array([[0.1, np.nan], [0.2, 0.3]]), np.zeros((0, 4)), np.zeros((3, 3))],
    ids=["rgb", "1-d", "nan", "empty", "smaller-than-one-lr-pixel"],
)
def test_bad_images_rejected(image):
    with pytest.raises(InputError):
        degrade(image, DegradationConfig(scale=4), np.random.default_rng(0))


@pytest.mark.parametrize("kwargs", [{"scale": 3}, {"scale": 8}, {"dose": 0}, {"read_noise": -1}, {"psf_sigma_hr_px": -1}])
def test_bad_config_rejected(kwargs):
    with pytest.raises(ValidationError):
        DegradationConfig(**kwargs)


def test_bad_noise_arguments_rejected():
    with pytest.raises(InputError):
        shot_noise(np.zeros((4, 4)), -1.0, np.random.default_rng(0))
    with pytest.raises(InputError):
        scan(np.zeros((4, 4)), psf_sigma_px=float("nan"), dose=10, rng=np.random.default_rng(0))
